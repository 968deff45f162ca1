"""Secrets never shown: credentials in URLs masked, a key pasted where a variable name belongs
recognised and never printed back.

Config holds no secrets by design (`llm.api_key_env` names a variable), but people paste them
anyway: a key into `llm.api_key_env`, `user:password@` or `?api_key=` into `llm.base_url` or
`tracking.uri`. Everything that leaves the process as text (error lines, logs, the manifest, MLflow
params, `validate-config`, reports) goes through `mask` or `hint` first. No third-party imports:
the command line uses this before Spark starts.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["MASK", "has_mask", "hint", "looks_like_key", "mask", "mask_url"]

MASK = "***"

# scheme://userinfo@ : the password (or a bare token user) is replaced, the rest kept
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<info>[^/@\s?#]+)@")
# ?api_key=... &token=... &sig=... (Azure SAS) &password=...
_QUERY = re.compile(
    r"(?P<key>[?&;](?:api[_-]?key|apikey|key|token|access[_-]?token|secret|password|pwd|sig|"
    r"signature|code)=)(?P<value>[^&#\s]+)",
    re.IGNORECASE,
)
_KEY_PREFIX = re.compile(r"^(sk|pk|rk|xox[abp]|ghp|gho|hf|AKIA|AIza|key)[-_]?", re.IGNORECASE)


def _userinfo(m: re.Match[str]) -> str:
    info = m.group("info")
    if info == MASK or info.endswith(":" + MASK):
        return m.group(0)
    user, sep, _password = info.partition(":")
    return f"{m.group('scheme')}{user}:{MASK}@" if sep else f"{m.group('scheme')}{MASK}@"


def mask_url(text: str) -> str:
    """`text` with every URL's credentials (userinfo password or token, secret query values)
    replaced by `***`; text without them is returned unchanged."""
    if "://" not in text and "=" not in text:
        return text
    text = _USERINFO.sub(_userinfo, text)
    return _QUERY.sub(lambda m: m.group("key") + MASK, text)


def looks_like_key(value: str) -> bool:
    """True for text that is an API key rather than an environment variable's name: a known key
    prefix (`sk-`, `ghp_`, `AKIA`, ...) or a long mix of upper- and lower-case letters and digits
    (variable names are UPPER_SNAKE or lower_snake, keys are random)."""
    v = value.strip()
    if len(v) < 16:
        return False
    if _KEY_PREFIX.match(v) and not v.isupper():
        return True
    if not re.fullmatch(r"[A-Za-z0-9_]+", v):
        return True  # a dash, dot or slash: no shell variable name holds one
    letters = re.sub(r"[^A-Za-z]", "", v)
    mixed_case = letters != letters.upper() and letters != letters.lower()
    digits = sum(ch.isdigit() for ch in v)
    return (mixed_case and digits >= 2) or (digits >= 6 and "_" not in v)


def hint(value: str) -> str:
    """A secret as it may be shown: its first three characters and its length."""
    v = value.strip()
    return f"{v[:3]!r}... ({len(v)} characters)" if len(v) >= 8 else f"({len(v)} characters)"


def mask(data: Any) -> Any:
    """`data` (nested dicts, lists, strings) with URL credentials masked in every string."""
    if isinstance(data, str):
        return mask_url(data)
    if isinstance(data, dict):
        return {k: mask(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return type(data)(mask(v) for v in data)
    return data


def has_mask(text: str | None) -> bool:
    """True when `text` is a URL whose credentials were masked (a saved config's)."""
    return bool(text) and (
        f":{MASK}@" in str(text) or f"//{MASK}@" in str(text) or f"={MASK}" in str(text)
    )
