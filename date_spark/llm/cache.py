"""Response cache: what makes LLM calls exactly-once across Spark task retries and job reruns.

The key is the sha256 of the canonical JSON of everything that determines a reply: the endpoint
identity, the model, the messages and the request parameters (temperature, seed, max_tokens,
response_format / extra_body). Never the API key. Entries are files under `llm.cache_path`, one per
key, written atomically (`tracking.atomic`: a temporary file in the same directory, then renamed),
so a reader sees the whole entry or none; a torn or corrupt file is a miss, never an error.

The path must be reachable from every executor: local disk on one machine, a shared volume on a
cluster (`/dbfs/...`, `/Volumes/...`, an NFS or FUSE mount of object storage). Every reply with
HTTP 200 is stored, including ones whose rows fail validation: they were paid for, and a seeded
rerun would produce them again.

Identical requests return the identical cached reply; callers that want several different samples
for the same prompt vary `seed` per request.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from date_spark.tracking.atomic import write_text_atomic

__all__ = ["CachedResponse", "ResponseCache", "cache_key"]


def cache_key(endpoint: str, params: dict[str, Any]) -> str:
    """sha256 over (endpoint, request parameters incl. model and messages), canonical JSON."""
    blob = json.dumps(
        {"endpoint": endpoint, "params": params},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CachedResponse:
    content: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None = None
    model: str | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "content": self.content,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "finish_reason": self.finish_reason,
                "model": self.model,
            }
        )

    @staticmethod
    def from_json(text: str) -> CachedResponse:
        d = json.loads(text)
        return CachedResponse(
            content=str(d["content"]),
            prompt_tokens=int(d.get("prompt_tokens") or 0),
            completion_tokens=int(d.get("completion_tokens") or 0),
            finish_reason=d.get("finish_reason"),
            model=d.get("model"),
        )


class ResponseCache:
    """File-per-key cache with hit/miss counters; `path=None` disables it (every get misses)."""

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = Path(path) if path else None
        self.hits = 0
        self.misses = 0
        self.writes = 0
        self._lock = threading.Lock()
        if self.path is not None:
            self.path.mkdir(parents=True, exist_ok=True)

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def _file(self, key: str) -> Path:
        assert self.path is not None
        return self.path / key[:2] / f"{key}.json"

    def get(self, key: str) -> CachedResponse | None:
        hit: CachedResponse | None = None
        if self.path is not None:
            try:
                hit = CachedResponse.from_json(self._file(key).read_text(encoding="utf-8"))
            except (OSError, ValueError, KeyError, TypeError):
                hit = None
        with self._lock:
            if hit is None:
                self.misses += 1
            else:
                self.hits += 1
        return hit

    def put(self, key: str, value: CachedResponse) -> None:
        if self.path is None:
            return
        write_text_atomic(self._file(key), value.to_json())
        with self._lock:
            self.writes += 1
