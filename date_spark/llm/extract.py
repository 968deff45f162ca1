"""Rows out of an LLM reply, tolerantly: JSON objects or lists, fenced code blocks, prose around
them, and a reply cut off mid-row (the rows before the cut are kept, the cut counted)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

__all__ = ["extract_rows"]

_FENCE = re.compile(r"```[A-Za-z0-9_-]*\s*\n?(.*?)```", re.DOTALL)
_DECODER = json.JSONDecoder()


def _rows_of(payload: Any, names: set[str], single: bool = True) -> list[Any] | None:
    """The row list inside a parsed payload, or None when it is not row-shaped. `single` accepts
    one bare row object (only for a whole reply: inside prose it may be a fragment)."""
    if isinstance(payload, list):
        return payload
    if isinstance(payload, dict):
        rows = payload.get("rows")
        if isinstance(rows, list):
            return rows
        lists = [v for v in payload.values() if isinstance(v, list)]
        if len(payload) == 1 and len(lists) == 1:
            return lists[0]
        if single and names and set(payload) & names:
            return [payload]
    return None


def _recover_truncated(text: str) -> list[Any]:
    """Complete objects of the first row array in a cut-off reply (the tail is dropped)."""
    m = re.search(r'"rows"\s*:\s*\[', text)
    start = m.end() if m else text.find("[") + 1
    if start <= 0:
        return []
    out: list[Any] = []
    i, n = start, len(text)
    while i < n:
        while i < n and text[i] in " \t\r\n,":
            i += 1
        if i >= n or text[i] != "{":
            break
        try:
            obj, i = _DECODER.raw_decode(text, i)
        except json.JSONDecodeError:
            break
        out.append(obj)
    return out


def extract_rows(text: str | None, names: Iterable[str] = ()) -> tuple[list[Any], int]:
    """Rows from a reply that may be clean JSON, fenced, wrapped in prose or truncated.
    Returns (rows, parse_errors): a truncated tail or an unreadable reply counts one error."""
    if not text or not text.strip():
        return [], 1
    nameset = set(names)
    s = text.strip()
    try:
        rows = _rows_of(json.loads(s), nameset)
        if rows is not None:
            return rows, 0
    except json.JSONDecodeError:
        pass
    for block in _FENCE.findall(s):
        try:
            rows = _rows_of(json.loads(block.strip()), nameset)
        except json.JSONDecodeError:
            continue
        if rows is not None:
            return rows, 0
    # JSON somewhere inside prose: try each opening bracket until one decodes to rows.
    tried = 0
    for m in re.finditer(r"[\[{]", s):
        tried += 1
        if tried > 200:
            break
        try:
            obj, _ = _DECODER.raw_decode(s, m.start())
        except json.JSONDecodeError:
            continue
        rows = _rows_of(obj, nameset, single=False)
        if rows is not None and (rows == [] or isinstance(rows[0], dict)):
            return rows, 0
    recovered = _recover_truncated(s)
    if not recovered:
        # Last resort: one bare row object inside prose.
        for m in re.finditer(r"\{", s):
            try:
                obj, _ = _DECODER.raw_decode(s, m.start())
            except json.JSONDecodeError:
                continue
            single = _rows_of(obj, nameset)
            if single is not None:
                return single, 0
    return recovered, 1
