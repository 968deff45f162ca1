"""LLM gateway benchmark: throughput against the ideal, a 429 storm, cache lookups.

    .venv/bin/python benchmarks/llm_gateway.py [--requests 400] [--latency 0.2]

Everything runs through Spark (`mapInPandas`, local[2]) against the in-process stub server:
  baseline    1 task x 1 call in flight: the sequential client every other row is compared with
  throughput  T tasks x C calls in flight at the stub's latency; ideal = T x C / latency
  storm       the stub answers 429 (Retry-After) to the first attempts; the attempt rate must stay
              within llm.requests_per_minute and every request must finish
  server-cap  the stub itself allows fewer requests/s than configured (a shared quota): 429s, AIMD
              and Retry-After must still finish the job near the server's rate
  cache       ResponseCache hits per second (one thread), against the baseline's calls per second
Writes benchmarks/results/<name>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

sys.path.insert(0, str(ROOT / "benchmarks"))
from recording import environment, write_result  # noqa: E402

from date_spark.config import LlmConfig  # noqa: E402
from date_spark.llm.cache import CachedResponse, ResponseCache, cache_key  # noqa: E402
from date_spark.llm.gateway import GatewayRun, requests_frame, run  # noqa: E402
from date_spark.llm.rows import RowSchema  # noqa: E402
from date_spark.schema import ColumnSpec, Kind, TableSchema  # noqa: E402
from date_spark.testing.stub import StubServer  # noqa: E402

TABLE = TableSchema(
    (
        ColumnSpec("age", Kind.NUMERIC, "bigint", True, True),
        ColumnSpec("income", Kind.NUMERIC, "double"),
        ColumnSpec("city", Kind.CATEGORICAL, "string"),
        ColumnSpec("label", Kind.CATEGORICAL, "string"),
    ),
    target="label",
    task="classification",
    classes=("no", "yes"),
)
SCHEMA = RowSchema.from_table(
    TABLE,
    "age >= 30 and income < 50000.0",
    domains={"city": ["Oslo", "Paris", "Rome"]},
    ranges={"age": (18, 90), "income": (0.0, 100_000.0)},
    n_rows=10,
)
STORM_RATE = 10.0  # the storm's configured requests/s over all tasks
STORM_REQUESTS = 120
SERVER_CAP = 5.0  # requests/s the stub itself allows in the server-cap scenario
CAP_REQUESTS = 60


@dataclass
class Row:
    scenario: str
    metric: str
    value: float
    reference: float | None
    ref_name: str
    vs_baseline: float | None = None

    def fmt(self) -> str:
        ratio = f"{self.value / self.reference:6.1%}" if self.reference else "   -  "
        base = f"{self.vs_baseline:7.2f}x" if self.vs_baseline is not None else "     -  "
        ref = f"{self.reference:9.2f}" if self.reference is not None else "        -"
        return (
            f"| {self.scenario:<11} | {self.metric:<33} | {self.value:9.2f} | {ref} "
            f"| {self.ref_name:<22} | {ratio} | {base} |"
        )


def spark_session() -> Any:
    from pyspark.sql import SparkSession

    s = (
        SparkSession.builder.master("local[2]")
        .appName("bench-llm-gateway")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )
    s.sparkContext.setLogLevel("ERROR")  # benchmark harness only
    return s


def requests(spark: Any, n: int, tag: str) -> Any:
    items = [
        (f"{tag}-{i:05d}", [{"role": "user", "content": f"rows for block {tag} {i}"}], SCHEMA)
        for i in range(n)
    ]
    return requests_frame(spark, items)


def cfg_for(url: str, cache: str | None, **kw: Any) -> LlmConfig:
    base: dict[str, Any] = {
        "provider": "openai",
        "base_url": url,
        "api_key_env": None,
        "cache_path": cache,
        "timeout_s": 30.0,
        "max_retries": 10,
        "backoff_base_s": 0.2,
        "backoff_max_s": 10.0,
        "requests_per_minute": 1_000_000.0,
        "tokens_per_minute": 1e9,
    }
    base.update(kw)
    return LlmConfig(**base)


def server_rate(arrivals: list[float]) -> tuple[float, float]:
    """(calls/s between the first and last arrival, max arrivals in any 1 s window)."""
    a = sorted(arrivals)
    if len(a) < 2:
        return 0.0, float(len(a))
    rate = (len(a) - 1) / (a[-1] - a[0])
    peak, j = 0, 0
    for i in range(len(a)):
        while a[i] - a[j] >= 1.0:
            j += 1
        peak = max(peak, i - j + 1)
    return rate, float(peak)


def timed_run(
    spark: Any, stub: StubServer, n: int, tag: str, cfg: LlmConfig, tasks: int
) -> tuple[GatewayRun, float]:
    stub.reset()
    df = requests(spark, n, tag)
    t0 = time.monotonic()
    out = run(df, cfg, num_tasks=tasks)
    return out, time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--tasks", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--name", default="llm_gateway", help="results file: results/<name>.json")
    a = ap.parse_args()
    spark = spark_session()
    env = environment(spark)
    summary: dict[str, Any] = {}
    table: list[Row] = []
    tmp = tempfile.mkdtemp(prefix="bench-llm-")
    lat, T, C = a.latency, a.tasks, a.concurrency

    stub = StubServer(latency_s=lat)
    url = stub.start()
    try:
        # Warm-up: Python workers, Arrow, imports.
        run(requests(spark, 4, "warm"), cfg_for(url, None), num_tasks=T)

        # Baseline: one sequential client.
        nb = max(10, int(a.requests / (T * C)))
        out, wall = timed_run(
            spark, stub, nb, "base", cfg_for(url, None, concurrency_per_task=1), 1
        )
        base_rate, _ = server_rate(stub.arrivals)
        assert out.stats.ok == nb
        table.append(
            Row("baseline", "calls/s (1 task x 1)", base_rate, 1 / lat, "ideal 1/latency", 1.0)
        )

        # Throughput.
        cfg = cfg_for(url, os.path.join(tmp, "c1"), concurrency_per_task=C)
        out, wall = timed_run(spark, stub, a.requests, "tp", cfg, T)
        assert out.stats.ok == a.requests, out.stats
        rate, _ = server_rate(stub.arrivals)
        ideal = T * C / lat
        summary.update(throughput_calls_per_s=rate, ideal_calls_per_s=ideal)
        summary["throughput_vs_ideal"] = rate / ideal
        table.append(
            Row(
                "throughput",
                f"calls/s ({T} tasks x {C})",
                rate,
                ideal,
                "ideal T*C/latency",
                rate / base_rate,
            )
        )
        e2e = a.requests / wall
        table.append(
            Row(
                "throughput",
                "calls/s end-to-end (incl. Spark)",
                e2e,
                ideal,
                "ideal T*C/latency",
                e2e / base_rate,
            )
        )
        p50, p95 = out.stats.latency_p50_s or 0.0, out.stats.latency_p95_s or 0.0
        table.append(Row("throughput", "call latency p50 (s)", p50, lat, "stub latency", None))
        table.append(Row("throughput", "call latency p95 (s)", p95, lat, "stub latency", None))

        # Storm: the first attempts are rate limited; the client must stay within its rate.
        configured = STORM_RATE  # requests/s over all tasks
        n_storm = STORM_REQUESTS
        stub.set(latency_s=lat, fault="rate_limit", fault_for_s=3.0, retry_after_s=0.5)
        cfg = cfg_for(
            url,
            os.path.join(tmp, "c2"),
            concurrency_per_task=C,
            requests_per_minute=configured * 60,
        )
        out, wall = timed_run(spark, stub, n_storm, "storm", cfg, T)
        rate, peak = server_rate(stub.arrivals)
        assert out.stats.ok == n_storm, out.stats
        burst = T * min(configured / T, C)
        summary.update(
            storm_requests=n_storm,
            storm_finished=out.stats.ok,
            storm_attempts_per_s=rate,
            storm_peak_attempts_in_1s=peak,
            storm_configured_per_s=configured,
            storm_allowed_peak=configured + burst,
        )
        table.append(
            Row("storm", "attempts/s (incl. 429s)", rate, configured, "configured rate", None)
        )
        table.append(
            Row(
                "storm",
                "peak attempts in any 1 s",
                peak,
                configured + burst,
                "configured + burst",
                None,
            )
        )
        table.append(
            Row(
                "storm",
                f"finished {out.stats.ok}/{n_storm}, 429s",
                float(stub.responses["429"]),
                float(out.stats.retries),
                "retries counted",
                None,
            )
        )
        table.append(
            Row("storm", "successes/s", n_storm / wall, configured, "configured rate", None)
        )

        # Server cap below the configured rate: 429s come from the server's own quota.
        cap = SERVER_CAP
        n_cap = CAP_REQUESTS
        stub.set(latency_s=lat, max_rps=cap)
        cfg = cfg_for(
            url, os.path.join(tmp, "c3"), concurrency_per_task=C, requests_per_minute=20 * 60
        )
        out, wall = timed_run(spark, stub, n_cap, "cap", cfg, T)
        assert out.stats.ok == n_cap, out.stats
        ok_rate = n_cap / wall
        summary.update(server_cap_per_s=cap, server_cap_successes_per_s=ok_rate)
        table.append(
            Row(
                "server-cap",
                f"successes/s (server allows {cap:g}/s)",
                ok_rate,
                cap,
                "server cap",
                None,
            )
        )
        table.append(
            Row("server-cap", "429s per success", stub.responses["429"] / n_cap, None, "-", None)
        )
    finally:
        stub.stop()

    # Cache lookups (hits), one thread.
    cache = ResponseCache(os.path.join(tmp, "lookup"))
    reply = CachedResponse(
        json.dumps({"rows": [{"age": 40, "income": 1.0, "city": "Rome", "label": "yes"}] * 10}),
        100,
        200,
    )
    keys = []
    for i in range(2000):
        k = cache_key(
            "openai:bench",
            {"model": "m", "messages": [{"role": "user", "content": str(i)}], "seed": 0},
        )
        cache.put(k, reply)
        keys.append(k)
    t0 = time.perf_counter()
    n_lookups = 20_000
    for i in range(n_lookups):
        assert cache.get(keys[i % len(keys)]) is not None
    hits = n_lookups / (time.perf_counter() - t0)
    table.append(Row("cache", "hits/s (1 thread)", hits, None, "-", hits / base_rate))
    t0 = time.perf_counter()
    params = {
        "model": "m",
        "messages": [{"role": "user", "content": "x" * 2000}],
        "seed": 0,
        "response_format": SCHEMA.request_kwargs("json_object"),
    }
    for _ in range(5000):
        cache_key("openai:bench", params)
    table.append(
        Row(
            "cache",
            "keys/s (2 kB prompt + schema)",
            5000 / (time.perf_counter() - t0),
            None,
            "-",
            None,
        )
    )

    head = (
        f"| {'scenario':<11} | {'metric':<33} | {'value':>9} | {'reference':>9} "
        f"| {'reference is':<22} | {'ratio':>6} | {'vs base':>8} |"
    )
    print()
    print(
        f"LLM gateway benchmark: stub latency {lat * 1000:.0f} ms, "
        f"{T} Spark tasks x {C} in flight, {a.requests} requests"
    )
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for r in table:
        print(r.fmt())
    summary["cache_hits_per_s"] = hits
    write_result(
        a.name,
        {
            "requests": a.requests,
            "latency_s": lat,
            "tasks": T,
            "concurrency": C,
            "storm_requests": STORM_REQUESTS,
            "storm_rate_per_s": STORM_RATE,
            "server_cap_per_s": SERVER_CAP,
            "server_cap_requests": CAP_REQUESTS,
        },
        {"summary": summary, "rows": [vars(r) for r in table]},
        env,
    )
    spark.stop()


if __name__ == "__main__":
    main()
