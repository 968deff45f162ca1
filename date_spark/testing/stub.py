"""A deterministic Chat Completions server with switchable faults, for tests and benchmarks.

It is a real HTTP server on 127.0.0.1 (Spark's Python workers are separate processes, so in-process
mocks never reach them). It reads the requested JSON schema from `response_format` (json_schema or
json_object + schema), from vLLM's `structured_outputs`, or from a schema embedded in the prompt,
and answers with rows inside the schema's enums and bounds that satisfy the rule quoted in the
schema's description. Rows depend only on the request (messages, seed), so replies are repeatable.
A custom row factory (`row_factory=`) may raise `BadRowRequest` to answer HTTP 400 instead.

Faults (`StubFaults.fault`), applied to the first `fault_count` chat requests (all when None) and,
with `fault_for_s`, only to requests arriving that soon after the first one (a storm that passes):
  HTTP level:  rate_limit (429 + Retry-After), server_error (500), slow (sleeps `slow_s`),
               reject_format (400 when a response_format/structured output is present),
               echo_auth (401 whose message quotes the Authorization header, like a bad proxy)
  reply level: malformed, truncated (cut inside the last row), prose, fenced
  row level (the first `bad_rows` rows of each reply, all when None):
               violate_rule, wrong_type, extra_field, missing_field, out_of_domain
`max_rps` adds a server-side rate limit (sliding one-second window, 429 + Retry-After beyond it);
`latency_s` delays every reply. Change faults at runtime with `StubServer.set(...)` or
`POST /_control` (a JSON body of StubFaults fields, merged into the current ones); `GET /_stats`
returns counters, `POST /_reset` forgets them.

`one_slot=True` serves like llama-cpp-python's server: one chat completion at a time (the others
queue), a reply the client stopped waiting for is still computed to the end, and `GET /models`
waits for the slot too (llama-cpp-python answers it only between completions).
`StubServer.finished` holds when each chat request's reply was done.

    python -m date_spark.testing.stub --port 8099 --latency 0.2 --fault rate_limit --fault-count 3
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import math
import random
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from statistics import NormalDist
from typing import Any, Literal

import pandas as pd

from date_spark.llm.rows import RULE_MARKER

__all__ = [
    "FAULTS",
    "HTTP_FAULTS",
    "REPLY_FAULTS",
    "ROW_FAULTS",
    "BadRowRequest",
    "RowFactory",
    "StubFaults",
    "StubServer",
    "default_rows",
    "find_schema",
    "main",
    "planted_rows",
    "row_schema_of",
    "rule_text",
    "serve_until_interrupted",
]


RowFactory = Callable[[dict[str, Any], dict[str, Any]], list[dict[str, Any]]]

HTTP_FAULTS = ("rate_limit", "server_error", "slow", "reject_format", "echo_auth")
REPLY_FAULTS = ("malformed", "truncated", "prose", "fenced")
ROW_FAULTS = ("violate_rule", "wrong_type", "extra_field", "missing_field", "out_of_domain")
FAULTS = HTTP_FAULTS + REPLY_FAULTS + ROW_FAULTS


class BadRowRequest(Exception):
    """Raised by a row factory that cannot serve a request (it names columns the factory does
    not have, say): the server answers HTTP 400 with the message, as a real endpoint refuses a
    bad request, instead of dropping the connection."""


@dataclass
class StubFaults:
    fault: str | None = None
    fault_count: int | None = None
    fault_for_s: float | None = None  # only for requests this soon after the first one
    bad_rows: int | None = None
    latency_s: float = 0.0
    slow_s: float = 5.0
    retry_after_s: float = 0.2
    max_rps: float | None = None

    def __post_init__(self) -> None:
        if self.fault is not None and self.fault not in FAULTS:
            raise ValueError(f"unknown stub fault {self.fault!r}; use one of {FAULTS}")


# ----------------------------------------------------------------------------------------------
# Schema discovery and row generation
# ----------------------------------------------------------------------------------------------


def _schema_in_text(text: str) -> dict[str, Any] | None:
    for block in re.findall(r"```(?:json)?\s*\n?(.*?)```", text, re.DOTALL):
        try:
            d = json.loads(block)
        except json.JSONDecodeError:
            continue
        if isinstance(d, dict) and "properties" in d:
            return d
    dec = json.JSONDecoder()
    for m in re.finditer(r"\{", text):
        try:
            d, _ = dec.raw_decode(text, m.start())
        except json.JSONDecodeError:
            continue
        if isinstance(d, dict) and isinstance(d.get("properties"), dict):
            return d
    return None


def find_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema a request asks for, in whichever dialect it was sent."""
    rf = body.get("response_format")
    if isinstance(rf, dict):
        if rf.get("type") == "json_schema":
            js = rf.get("json_schema") or {}
            if isinstance(js.get("schema"), dict):
                return dict(js["schema"])
        if isinstance(rf.get("schema"), dict):
            return dict(rf["schema"])
    so = body.get("structured_outputs")
    if isinstance(so, dict) and isinstance(so.get("json"), dict):
        return dict(so["json"])
    if isinstance(body.get("guided_json"), dict):
        return dict(body["guided_json"])
    for msg in reversed(body.get("messages") or []):
        content = msg.get("content") if isinstance(msg, dict) else None
        if isinstance(content, str):
            found = _schema_in_text(content)
            if found is not None:
                return found
    return None


def row_schema_of(schema: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """(properties of one row, number of rows asked for)."""
    rows = (schema.get("properties") or {}).get("rows") or {}
    items = rows.get("items") or {}
    n = int(rows.get("minItems") or rows.get("maxItems") or 3)
    return dict(items.get("properties") or {}), n


def rule_text(schema: dict[str, Any]) -> str | None:
    desc = schema.get("description") or ""
    if RULE_MARKER in desc:
        return desc.split(RULE_MARKER, 1)[1].strip() or None
    return None


def _parse_rule(text: str | None) -> Any:
    if not text:
        return None
    try:
        from date_spark.rules import parse_rule

        return parse_rule(text)
    except Exception:
        return None


def _rule_mask(rule: Any, rows: list[dict[str, Any]]) -> list[bool]:
    if rule is None or not rows:
        return [True] * len(rows)
    try:
        return [bool(x) for x in rule.mask(pd.DataFrame(rows)).tolist()]
    except Exception:
        return [True] * len(rows)


def _rule_ok(rule: Any, row: dict[str, Any]) -> bool:
    return _rule_mask(rule, [row])[0]


def _date_range(prop: dict[str, Any]) -> tuple[dt.date, dt.date]:
    lo, hi = dt.date(2020, 1, 1), dt.date(2020, 12, 31)
    m = re.search(r"from (\S+) to (\S+)", prop.get("description") or "")
    if m:
        with contextlib.suppress(ValueError):
            lo = dt.date.fromisoformat(m.group(1)[:10])
        with contextlib.suppress(ValueError):
            hi = dt.date.fromisoformat(m.group(2)[:10])
    return lo, max(lo, hi)


def _value(prop: dict[str, Any], rng: random.Random) -> Any:
    types = prop.get("type")
    t = next((x for x in types if x != "null"), "string") if isinstance(types, list) else types
    enum = [v for v in prop.get("enum") or [] if v is not None]
    if enum:
        return rng.choice(enum)
    if t == "boolean":
        return rng.random() < 0.5
    if t in ("integer", "number"):
        lo = prop.get("minimum", prop.get("exclusiveMinimum"))
        hi = prop.get("maximum", prop.get("exclusiveMaximum"))
        lo = 0 if lo is None else lo
        hi = lo + 100 if hi is None else hi
        if t == "integer":
            a, b = math.ceil(lo), math.floor(hi)
            if "exclusiveMinimum" in prop and a == lo:
                a += 1
            if "exclusiveMaximum" in prop and b == hi:
                b -= 1
            return rng.randint(a, max(a, b))
        span = float(hi) - float(lo)
        return round(float(lo) + span * (0.05 + 0.9 * rng.random()), 6)
    if t == "string" and prop.get("format") in ("date", "date-time"):
        lo_d, hi_d = _date_range(prop)
        d = lo_d + dt.timedelta(days=rng.randint(0, (hi_d - lo_d).days))
        return d.isoformat() if prop["format"] == "date" else f"{d.isoformat()}T12:00:00"
    return f"v{rng.randint(0, 9)}"


def default_rows(schema: dict[str, Any], body: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows inside the schema's enums/bounds that satisfy its rule; seeded by the request."""
    props, n = row_schema_of(schema)
    rule = _parse_rule(rule_text(schema))
    seed_src = json.dumps([body.get("messages"), body.get("seed")], sort_keys=True, default=str)
    rng = random.Random(hashlib.sha256(seed_src.encode()).hexdigest())
    rows: list[dict[str, Any]] = []
    last: list[dict[str, Any]] = []
    for _round in range(20):
        # Candidates in bulk, one vectorised rule check per round.
        last = [{name: _value(p, rng) for name, p in props.items()} for _ in range(2 * n)]
        rows += [r for r, ok in zip(last, _rule_mask(rule, last), strict=True) if ok]
        if len(rows) >= n:
            return rows[:n]
    return (rows + last)[:n]


def planted_rows(
    target: str = "y",
    harmful_regimes: frozenset[int] = frozenset(),
    segment: bool = False,
    noise: float = 0.0,
    task: Literal["classification", "regression"] = "classification",
) -> RowFactory:
    """A row factory for the planted-regime table (`testing.planted.planted_regimes`, with its
    thin segment R5 when `segment`): the stub's rule-satisfying rows labelled by the planted
    relation, so they help, except in `harmful_regimes`, where the label is flipped (regression:
    the value negated), so they hurt. With `noise` (the table's own parameter), helpful labels
    flip at the table's rate, or values get the table's Gaussian noise (sd 4 x `noise`), decided
    by a hash of the row, so repeatable: the rows are then new draws of the real distribution,
    the best an LLM could do. Refinement requests get no rules back (the DGRs stay as
    discovered)."""
    from date_spark.testing.planted import planted_truth

    def factory(schema: dict[str, Any], body: dict[str, Any]) -> list[dict[str, Any]]:
        props, _ = row_schema_of(schema)
        if set(props) == {"rule"}:
            return []
        rows = default_rows(schema, body)
        need = range(8 if segment else 7)
        if not rows or not all(f"x{i}" in rows[0] for i in need) or "c0" not in rows[0]:
            return rows
        frame = pd.DataFrame(rows)
        truth = planted_truth(frame, segment=segment, task=task)
        u = pd.util.hash_pandas_object(frame, index=False).to_numpy() % 1_000_003 / 1_000_003
        if task == "regression":
            normal = NormalDist(0.0, 4 * noise) if noise > 0 else None
            for r, g, v, ui in zip(rows, truth["regime"], truth["value"], u, strict=True):
                v = float(v) + (normal.inv_cdf(min(max(ui, 1e-9), 1 - 1e-9)) if normal else 0.0)
                r[target] = -v if int(g) in harmful_regimes else v
            return rows
        for r, g, y, ui in zip(rows, truth["regime"], truth["label"], u, strict=True):
            y = int(1 - y) if ui < noise else int(y)
            r[target] = int(1 - y if int(g) in harmful_regimes else y)
        return rows

    return factory


def _violate(row: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Move one rule column just past one of the rule's bounds so the row fails the rule."""
    rule = _parse_rule(rule_text(schema))
    if rule is None:
        return row
    props, _ = row_schema_of(schema)
    for conj in rule.conjunctions:
        for p in conj.predicates:
            if p.column not in row or isinstance(p.value, (tuple, bool, str)) or p.value is None:
                continue
            v = p.value
            if not isinstance(v, (int, float)):
                continue
            integral = (props.get(p.column) or {}).get("type") == "integer"
            step = 1 if integral else max(abs(float(v)) * 0.01, 0.01)
            new = {"<": v, "<=": v + step, ">": v, ">=": v - step, "=": v + step}.get(p.op)
            if new is None:
                continue
            cand = {**row, p.column: new}
            if not _rule_ok(rule, cand):
                return cand
    return row


def _corrupt(row: dict[str, Any], fault: str, schema: dict[str, Any]) -> dict[str, Any]:
    names = list(row)
    if not names:
        return row
    first = names[0]
    if fault == "violate_rule":
        return _violate(row, schema)
    if fault == "wrong_type":
        return {**row, first: ["not", "a", "scalar"]}
    if fault == "extra_field":
        return {**row, "unexpected_column": 1}
    if fault == "missing_field":
        return {k: v for k, v in row.items() if k != first}
    if fault == "out_of_domain":
        props, _ = row_schema_of(schema)
        p = props.get(first) or {}
        if p.get("enum"):
            return {**row, first: "zz-not-a-category"}
        if p.get("type") in ("integer", "number"):
            hi = p.get("maximum", p.get("exclusiveMaximum", 0)) or 0
            return {**row, first: hi + 1_000_000}
        return {**row, first: "zz-not-a-category"}
    return row


# ----------------------------------------------------------------------------------------------
# Server
# ----------------------------------------------------------------------------------------------


class _State:
    def __init__(
        self, faults: StubFaults, row_factory: RowFactory | None, one_slot: bool = False
    ) -> None:
        self.faults = faults
        self.row_factory = row_factory or default_rows
        self.lock = threading.Lock()
        self.slot: threading.Lock | None = threading.Lock() if one_slot else None
        self.count = 0
        self.finished: dict[int, float] = {}
        self.bodies: list[dict[str, Any]] = []
        self.auth: list[str] = []
        self.arrivals: list[float] = []
        self.responses: Counter[str] = Counter()
        self.window: deque[float] = deque()
        self.first: float | None = None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, keep-alive clients wait for a delayed
    # ACK (~40 ms) before the body arrives.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # silence per-request logging
        return

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _body(self) -> Any:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        return json.loads(raw or b"{}")

    def do_GET(self) -> None:
        st = self.server.state
        if self.path.split("?", 1)[0].rstrip("/").endswith("/models"):
            with st.slot or contextlib.nullcontext():
                pass  # one-slot: answered only once no completion is running
            self._send(200, {"object": "list", "data": [{"id": "stub", "object": "model"}]})
        elif self.path.startswith("/_stats"):
            with st.lock:
                self._send(200, {"requests": st.count, "responses": dict(st.responses)})
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        st = self.server.state
        try:
            body = self._body()
        except (ValueError, json.JSONDecodeError):
            self._send(400, {"error": {"message": "request body is not JSON"}})
            return
        if self.path.startswith("/_control"):
            with st.lock:
                fields = {f.name for f in dataclasses.fields(StubFaults)}
                merged = {
                    **dataclasses.asdict(st.faults),
                    **{k: v for k, v in body.items() if k in fields},
                }
                st.faults = StubFaults(**merged)
            self._send(200, dataclasses.asdict(st.faults))
            return
        if self.path.startswith("/_reset"):
            self.server.reset()
            self._send(200, {"ok": True})
            return
        if not self.path.split("?", 1)[0].rstrip("/").endswith("/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        self._chat(body)

    def _chat(self, body: dict[str, Any]) -> None:
        st = self.server.state
        arrived = time.monotonic()
        with st.slot or contextlib.nullcontext():
            idx = self._serve_chat(body, arrived)
            with st.lock:
                st.finished[idx] = time.monotonic()

    def _serve_chat(self, body: dict[str, Any], now: float) -> int:
        """Answer one chat request (faults included); returns its index."""
        st = self.server.state
        with st.lock:
            idx = st.count
            st.count += 1
            st.bodies.append(body)
            st.auth.append(self.headers.get("Authorization") or self.headers.get("api-key") or "")
            st.arrivals.append(now)
            f = st.faults
            limited_for: float | None = None
            if f.max_rps:
                while st.window and st.window[0] <= now - 1.0:
                    st.window.popleft()
                if len(st.window) >= f.max_rps:
                    limited_for = max(0.01, st.window[0] + 1.0 - now)
                else:
                    st.window.append(now)
            if st.first is None:
                st.first = now
            active = f.fault if (f.fault_count is None or idx < f.fault_count) else None
            if f.fault_for_s is not None and now - st.first >= f.fault_for_s:
                active = None
        if f.latency_s:
            time.sleep(f.latency_s)
        if limited_for is not None:
            self._rate_limited(limited_for, "stub rate limit exceeded (max_rps)")
            return idx
        if active == "rate_limit":
            self._rate_limited(f.retry_after_s, "Rate limit reached (stub fault)")
            return idx
        if active == "server_error":
            self._count("500")
            self._send(500, {"error": {"message": "internal error (stub fault)", "type": "server"}})
            return idx
        if active == "slow":
            time.sleep(f.slow_s)
        if active == "echo_auth":
            self._count("401")
            auth = self.headers.get("Authorization") or self.headers.get("api-key") or ""
            self._send(401, {"error": {"message": f"invalid credentials in header {auth!r}"}})
            return idx
        if active == "reject_format" and (
            "response_format" in body or "structured_outputs" in body
        ):
            self._count("400")
            self._send(400, {"error": {"message": "response_format is not supported here"}})
            return idx
        self._reply(body, active, f)
        return idx

    def _rate_limited(self, after: float, msg: str) -> None:
        self._count("429")
        headers = {
            "Retry-After": str(max(1, math.ceil(after))),
            "retry-after-ms": str(int(after * 1000)),
        }
        self._send(429, {"error": {"message": msg, "type": "rate_limit"}}, headers)

    def _count(self, what: str) -> None:
        st = self.server.state
        with st.lock:
            st.responses[what] += 1

    def _reply(self, body: dict[str, Any], active: str | None, f: StubFaults) -> None:
        st = self.server.state
        schema = find_schema(body)
        try:
            rows: list[dict[str, Any]] = st.row_factory(schema, body) if schema else []
        except BadRowRequest as e:
            self._count("400")
            self._send(400, {"error": {"message": str(e), "type": "invalid_request_error"}})
            return
        if active in ROW_FAULTS:
            k = len(rows) if f.bad_rows is None else min(f.bad_rows, len(rows))
            rows = [_corrupt(r, active, schema or {}) if i < k else r for i, r in enumerate(rows)]
        text = json.dumps({"rows": rows})
        finish = "stop"
        if active == "malformed":
            text = "{rows: [this is not json"
        elif active == "truncated":
            cut = text.rfind("{")  # inside the last row
            text = text[: cut + max(2, (len(text) - cut) // 2)] if cut > 0 else text[:-5]
            finish = "length"
        elif active == "prose":
            text = f"Sure! Here are the rows you asked for:\n{text}\nLet me know if you need more."
        elif active == "fenced":
            text = f"```json\n{text}\n```"
        prompt_chars = sum(len(str(m.get("content", ""))) for m in body.get("messages") or [])
        self._count("200")
        self._send(
            200,
            {
                "id": f"stub-{hashlib.sha1(text.encode()).hexdigest()[:12]}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "stub"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": finish,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_chars // 4 + 1,
                    "completion_tokens": len(text) // 4 + 1,
                    "total_tokens": prompt_chars // 4 + len(text) // 4 + 2,
                },
            },
        )


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, addr: tuple[str, int], state: _State) -> None:
        self.state = state
        super().__init__(addr, _Handler)

    def reset(self) -> None:
        st = self.state
        with st.lock:
            st.count = 0
            st.bodies.clear()
            st.auth.clear()
            st.arrivals.clear()
            st.responses.clear()
            st.window.clear()
            st.finished.clear()
            st.first = None


class StubServer:
    """`with StubServer(latency_s=0.2) as base_url:` runs the stub in a background thread."""

    def __init__(
        self,
        *,
        row_factory: RowFactory | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        one_slot: bool = False,
        **faults: Any,
    ) -> None:
        self._state = _State(StubFaults(**faults), row_factory, one_slot)
        self._addr = (host, port)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.base_url = ""

    def start(self) -> str:
        self._server = _Server(self._addr, self._state)
        host, port = self._server.server_address[:2]
        self.base_url = f"http://{host!s}:{port}/v1"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self.base_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- control and inspection -----------------------------------------------------------------
    def set(self, **faults: Any) -> None:
        """Replace the fault settings (unspecified fields reset to defaults)."""
        with self._state.lock:
            self._state.faults = StubFaults(**faults)
            self._state.first = None

    def reset(self) -> None:
        """Forget recorded requests and counters (fault settings stay)."""
        if self._server is not None:
            self._server.reset()

    @property
    def faults(self) -> StubFaults:
        return self._state.faults

    @property
    def count(self) -> int:
        return self._state.count

    @property
    def bodies(self) -> list[dict[str, Any]]:
        with self._state.lock:
            return list(self._state.bodies)

    @property
    def auth_headers(self) -> list[str]:
        with self._state.lock:
            return list(self._state.auth)

    @property
    def arrivals(self) -> list[float]:
        with self._state.lock:
            return list(self._state.arrivals)

    @property
    def finished(self) -> list[float | None]:
        """When each chat request's reply was done (by arrival order; None while running)."""
        with self._state.lock:
            return [self._state.finished.get(i) for i in range(self._state.count)]

    @property
    def responses(self) -> Counter[str]:
        with self._state.lock:
            return Counter(self._state.responses)


def serve_until_interrupted(server: StubServer) -> None:
    """Block until Ctrl-C, then stop `server`: how a test double started by hand runs."""
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Stub Chat Completions server with faults")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8099)
    ap.add_argument("--latency", type=float, default=0.0, help="seconds added to every reply")
    ap.add_argument("--fault", choices=FAULTS, default=None)
    ap.add_argument("--fault-count", type=int, default=None, help="fault only the first N")
    ap.add_argument("--bad-rows", type=int, default=None)
    ap.add_argument("--retry-after", type=float, default=0.2)
    ap.add_argument("--max-rps", type=float, default=None)
    ap.add_argument(
        "--one-slot", action="store_true", help="one completion at a time, like llama.cpp"
    )
    a = ap.parse_args(argv)
    stub = StubServer(
        host=a.host,
        port=a.port,
        latency_s=a.latency,
        fault=a.fault,
        fault_count=a.fault_count,
        bad_rows=a.bad_rows,
        retry_after_s=a.retry_after,
        max_rps=a.max_rps,
        one_slot=a.one_slot,
    )
    url = stub.start()
    print(f"stub Chat Completions server at {url} (Ctrl-C to stop)", flush=True)
    serve_until_interrupted(stub)


if __name__ == "__main__":
    main()
