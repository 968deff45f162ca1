"""The facade: `DateSynthesizer(config).fit(df)` learns what the table looks like, `.run()` runs the
whole job. scikit-learn manners: `__init__` only stores config, `fit` returns self, learned state
ends in `_`."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from pyspark.sql import DataFrame, SparkSession

from date_spark import io
from date_spark.config import Config
from date_spark.errors import DateSparkError
from date_spark.io import Profile
from date_spark.runs import Run, open_run, start_run
from date_spark.schema import TableSchema, column_specs
from date_spark.spark import session

log = logging.getLogger(__name__)

# Stages of the job in order, and whether this build has them. The job says plainly which it skips.
PIPELINE: tuple[tuple[str, bool], ...] = (
    ("prepare", True),
    ("discovery", False),
    ("generation", False),
    ("selection", False),
    ("output", False),
)


@dataclass
class RunResult:
    run_id: str
    run_dir: str
    stages_done: list[str]
    stages_not_built: list[str]
    summary: dict[str, Any] = field(default_factory=dict)


class DateSynthesizer:
    def __init__(self, config: Config | None = None, spark: SparkSession | None = None) -> None:
        self.config = config or Config()
        self.spark = spark

    def _session(self) -> SparkSession:
        if self.spark is None:
            self.spark = session(self.config.spark)
        return self.spark

    def fit(self, df: DataFrame | None = None) -> DateSynthesizer:
        """Check and profile the input (`df`, or the table `input` names)."""
        spark = self._session()
        cfg = self.config
        if df is None:
            data, schema, profile = io.prepare(spark, cfg)
        else:
            selected = io.normalize(io.select_columns(df, cfg.input))
            data, schema, profile = io.validate_and_profile(
                selected, column_specs(selected.schema), cfg.input
            )
        self.data_: DataFrame = data
        self.schema_: TableSchema = schema
        self.profile_: Profile = profile
        return self

    def run(self, df: DataFrame | None = None, resume: str | None = None) -> RunResult:
        """Run every built stage; results land under `output.runs_dir/<run_id>`."""
        cfg = self.config
        if df is None:
            io.check_output(cfg.input, cfg.output)
        t0 = time.monotonic()
        # Validate everything before anything is written: bad input leaves no run behind.
        self.fit(df)
        prepare_s = time.monotonic() - t0
        run: Run = (
            open_run(cfg.output.runs_dir, resume) if resume else start_run(cfg.output.runs_dir)
        )
        try:
            run.update(
                run_id=run.run_id,
                config=cfg.redacted(),
                input_schema=self.schema_.to_json(),
            )
            run.finish_stage(
                "prepare",
                {"seconds": round(prepare_s, 3), "profile": self.profile_.to_dict()},
            )
        except OSError as err:
            raise DateSparkError(f"cannot write run directory {run.root}: {err}") from err
        done = [name for name, built in PIPELINE if built]
        missing = [name for name, built in PIPELINE if not built]
        run.update(stages_not_built=missing)
        log.info("input: %s", self.profile_.summary())
        return RunResult(
            run_id=run.run_id,
            run_dir=str(run.root),
            stages_done=done,
            stages_not_built=missing,
            summary={"profile": self.profile_.summary()},
        )
