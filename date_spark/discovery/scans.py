"""Count full passes over a table from Spark's own metrics, through the DataFrame API only.

Discovery claims a bounded number of full-table passes per level; this module measures them
instead of declaring them. Every query that reads the table goes through `ScanMeter.observe`,
which attaches a fresh `Observation` (Spark's observed metrics, `Dataset.observe`) counting the
rows that flow out of the table. After the level's queries ran, `passes()` is the number of rows
observed so far divided by the table's rows: 1.0 per full pass.

What it counts, exactly: the rows each observed query read from the table, including a table read
twice inside one query. A later query that reads a cached frame derived from the table is not a
pass (it reads the cache); if the cache were lost and Spark recomputed the frame, that recomputation
would not be counted (an Observation keeps the metrics of the first query that ran it). The
discovery benchmark therefore also reports the input records of the stages each level ran (the
status REST API, classic sessions only) as an independent check.

Only the DataFrame API, no Spark context or JVM handle: this works wherever `DataFrame.observe`
with an `Observation` does (classic sessions, and Spark Connect clients that report observed
metrics). Anywhere the metrics cannot be read, `passes()` is None and logs say "not measured"
rather than a number.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from pyspark.sql import DataFrame, Observation
from pyspark.sql import functions as F

__all__ = ["GET_TIMEOUT_S", "ROWS", "ScanMeter", "format_passes"]


logger = logging.getLogger("date_spark.discovery.scans")

ROWS = "rows"
# An Observation is filled when its query finishes; `get` blocks until then (forever on a classic
# session if the query never ran the observed plan). Reads are made only after the query returned,
# so the wait is short; past this limit the pass is "not measured" rather than a hang.
GET_TIMEOUT_S = 30.0


def _get(obs: Observation, timeout_s: float) -> int | None:
    """The observed row count, or None when Spark did not report it within `timeout_s`."""
    box: dict[str, Any] = {}

    def read() -> None:
        try:
            box["value"] = obs.get.get(ROWS)
        except Exception as e:
            box["error"] = e

    t = threading.Thread(target=read, name="date-spark-scan-meter", daemon=True)
    t.start()
    t.join(timeout_s)
    if "error" in box:
        logger.debug("scan meter: observed metrics unavailable: %s", box["error"])
        return None
    value = box.get("value")
    return int(value) if value is not None else None


class ScanMeter:
    """Counts the rows every observed query reads from one table."""

    def __init__(self, timeout_s: float = GET_TIMEOUT_S) -> None:
        self.timeout_s = timeout_s
        self._pending: list[Observation] = []
        self._rows = 0
        self._broken = False

    def observe(self, df: DataFrame) -> DataFrame:
        """`df` with a fresh row counter attached; use the result for exactly one query (its
        cached descendants included)."""
        if self._broken:
            return df
        try:
            obs = Observation()
            out = df.observe(obs, F.count(F.lit(1)).alias(ROWS))
        except Exception as e:
            logger.debug("scan meter: DataFrame.observe unavailable: %s", e)
            self._broken = True
            return df
        self._pending.append(obs)
        return out

    def rows(self) -> int | None:
        """Rows read from the table by every observed query that has run, or None when any of
        them could not be measured. Call only after those queries returned."""
        if self._broken:
            return None
        pending, self._pending = self._pending, []
        for obs in pending:
            got = _get(obs, self.timeout_s)
            if got is None:
                self._broken = True
                return None
            self._rows += got
        return self._rows

    def passes(self, table_rows: int) -> float | None:
        """Full passes over a table of `table_rows` rows so far (None: not measured)."""
        rows = self.rows()
        if rows is None or table_rows <= 0:
            return None
        return rows / table_rows


def format_passes(passes: float | None) -> str:
    """How logs show a measured pass count: "2 full scans", "1.5 full scans", "not measured"."""
    if passes is None:
        return "full scans not measured"
    shown = f"{passes:.2f}".rstrip("0").rstrip(".")
    return f"{shown} full scan{'' if shown == '1' else 's'}"
