"""Spark's own job and stage metrics from the driver's status REST API (benchmarks only).

`/api/v1/applications/<id>/jobs` and `/stages` give each job's submission time and stages, and each
stage attempt's input records (rows read from files). Benchmarks assign jobs to the phases they
timed by submission time and count full-table passes as input records / table rows: a measure
independent of the library's own observed counter. Needs a classic session with the UI on
(`spark.ui.enabled=true`; `spark.ui.port=0` picks a free port).
"""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.sql import SparkSession

UI_CONF = {
    "spark.ui.enabled": "true",
    "spark.ui.port": "0",
    "spark.ui.retainedJobs": "100000",
    "spark.ui.retainedStages": "100000",
    "spark.ui.showConsoleProgress": "false",
}


def _when(text: str) -> float:
    """REST times look like 2026-11-20T10:00:00.123GMT."""
    return (
        dt.datetime.strptime(text.replace("GMT", ""), "%Y-%m-%dT%H:%M:%S.%f")
        .replace(tzinfo=dt.timezone.utc)
        .timestamp()
    )


@dataclass(frozen=True)
class Job:
    job_id: int
    submitted: float  # epoch seconds
    stage_ids: tuple[int, ...]
    status: str


class SparkRest:
    def __init__(self, spark: SparkSession) -> None:
        sc = spark.sparkContext  # benchmark harness only: the library never touches sparkContext
        if not sc.uiWebUrl:
            raise SystemExit("the status REST API needs spark.ui.enabled=true")
        self.base = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}"

    def _get(self, path: str) -> Any:
        with urllib.request.urlopen(self.base + path, timeout=60) as r:
            return json.loads(r.read())

    def jobs(self) -> list[Job]:
        return [
            Job(
                int(j["jobId"]),
                _when(j["submissionTime"]),
                tuple(int(s) for s in j["stageIds"]),
                str(j["status"]),
            )
            for j in self._get("/jobs")
            if j.get("submissionTime")
        ]

    def settle(self, timeout_s: float = 60.0) -> None:
        """Wait until the listener bus has recorded every job as finished."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(j.status in ("SUCCEEDED", "FAILED") for j in self.jobs()):
                return
            time.sleep(0.2)

    def input_records(self) -> dict[int, int]:
        """Rows read from files per stage id, over all its attempts (a retried stage reads
        again)."""
        out: dict[int, int] = {}
        for s in self._get("/stages"):
            sid = int(s["stageId"])
            out[sid] = out.get(sid, 0) + int(s.get("inputRecords", 0))
        return out

    def phases(self, bounds: Sequence[float], after: float) -> list[tuple[list[Job], int]]:
        """Jobs and input records of each phase: phase i holds the jobs submitted in
        (bounds[i-1], bounds[i]], phase 0 those in (after, bounds[0]]."""
        self.settle()
        jobs = self.jobs()
        records = self.input_records()
        out: list[tuple[list[Job], int]] = []
        lo = after
        for hi in bounds:
            mine = [j for j in jobs if lo < j.submitted <= hi]
            stages = {s for j in mine for s in j.stage_ids}
            out.append((mine, sum(records.get(s, 0) for s in stages)))
            lo = hi
        return out
