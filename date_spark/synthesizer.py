"""The facade: `DateSynthesizer(config).fit(df)` runs the three algorithms, `.sample()` returns the
kept synthetic rows, `.run()` is the whole job (write, track, evaluate), `.save(path)` and
`DateSynthesizer.load(path)` keep a fitted one (each stage saved as a run saves it). scikit-learn
manners:
`__init__` only stores config, `fit` returns self, learned state ends in `_` (`rules_`, `arms_`,
`selection_`).

Every stage saves its result under `output.runs_dir/<run_id>/<stage>/`, and the manifest records
which stages finished; `run(resume=RUN_ID)` loads finished stages instead of recomputing them (a
run stopped after generation resumes with zero LLM calls).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from date_spark import discovery as discovery_stage
from date_spark.columns import ARM, GENERATOR, PARENTS, ROUND, RULE, named_col
from date_spark.config import Config, OutputConfig, load_config
from date_spark.discovery import Discovery
from date_spark.errors import (
    ConfigError,
    DateSparkError,
    Interrupted,
    NotFittedError,
    OutputError,
    interrupted_by,
)
from date_spark.evaluation.utility import Utility
from date_spark.generation import (
    DGR_COL,
    REQUEST_COL,
    REST,
    GenerationResult,
    Generator,
    arms_table,
    request_parents,
)
from date_spark.io import output
from date_spark.io import read as io
from date_spark.io.locks import writer_lock
from date_spark.io.read import Profile
from date_spark.io.split import SPLIT_COL, TEST, TRAIN, assign_split
from date_spark.logs import Heartbeat
from date_spark.modeling.models import ModelSpec
from date_spark.rules import parse_rule
from date_spark.runtime.interrupts import rewatch_sigint, watch_sigint
from date_spark.runtime.placement import warm_workers
from date_spark.runtime.spark import session, sql_conf, to_pandas
from date_spark.schema import TableSchema, column_specs
from date_spark.selection import (
    Arm,
    CrossFitEvaluator,
    Selection,
    drop_copies,
    gain_evaluator,
    nothing_kept_reason,
    search_evaluators,
    select,
    select_by_gain,
)
from date_spark.tracking.atomic import write_json_atomic, write_text_atomic
from date_spark.tracking.mlflow_log import Tracker, warm_store
from date_spark.tracking.runs import (
    STAGES,
    Run,
    check_resume_config,
    check_resume_input,
    input_fingerprint,
    open_run,
    stage,
    start_run,
)

__all__ = ["DateSynthesizer", "RunResult"]


log = logging.getLogger(__name__)


@dataclass
class RunResult:
    run_id: str
    run_dir: str
    stages_done: list[str]
    output: dict[str, Any] = field(default_factory=dict)
    mlflow_run_id: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)


def _tag(spark: SparkSession, stage: str) -> None:
    """Name the stage on the Spark jobs that follow (job tags; Spark 3.5 classic lacks them)."""
    with contextlib.suppress(Exception):
        spark.clearTags()
        spark.addTag(f"date-spark-{stage}")


class DateSynthesizer:
    def __init__(self, config: Config | None = None, spark: SparkSession | None = None) -> None:
        self.config = config or Config()
        self.spark = spark

    # -- helpers --------------------------------------------------------------------------------
    def _session(self) -> SparkSession:
        if self.spark is None:
            self.spark = session(self.config.spark)
            rewatch_sigint(self)
        return self.spark

    @contextlib.contextmanager
    def _timed(self, name: str) -> Iterator[None]:
        self.stage_: str | None = name
        log.info("stage %s: start", name)
        t0 = time.monotonic()
        with Heartbeat(name):  # a line at least every 20 s while the stage runs
            _tag(self._session(), name)  # the first stage starts Spark: also a silent wait
            with sql_conf(self._session()):
                yield
        self.stage_ = None
        secs = time.monotonic() - t0
        self.seconds_[name] = round(secs, 3)
        log.info("stage %s: done in %.1fs", name, secs)

    def _discovery_schema(self, schema: TableSchema) -> TableSchema:
        # Sensitive columns never shape rules, so their values never reach a prompt; free-text
        # columns (long values or line breaks) would make rules, prompts and `_date_rule`
        # unbounded, so rules never use them either.
        hidden = set(self.config.generation.sensitive_columns) | set(
            getattr(self, "free_text_", ())
        )
        cols = tuple(c for c in schema.columns if c.name not in hidden)
        return TableSchema(cols, schema.target, schema.task, schema.classes)

    # -- fit ------------------------------------------------------------------------------------
    def prepare(self, df: DataFrame | None = None) -> DateSynthesizer:
        """Read (or take `df`), check and profile the input; nothing is written."""
        cfg = self.config
        self.seconds_: dict[str, float] = getattr(self, "seconds_", {})
        with self._timed("prepare"):  # starts Spark when no session is active
            spark = self._session()
            raw = io.read_input(spark, cfg.input) if df is None else df
            selected = io.normalize(io.select_columns(raw, cfg.input), cfg.input.target)
            output.check_input_columns(raw.schema)
            data, schema, profile = io.validate_and_profile(
                selected, column_specs(selected.schema), cfg.input
            )
        self.raw_: DataFrame = raw
        self.input_schema_: T.StructType = raw.schema
        self.data_: DataFrame = data.transform(
            assign_split(
                schema.names, cfg.split.test_fraction, cfg.split.validation_fraction, cfg.seed
            )
        )
        self.schema_: TableSchema = schema
        self.profile_: Profile = profile
        cap = cfg.generation.max_value_chars
        self.free_text_: list[str] = io.free_text_columns(profile, cap)
        if self.free_text_:
            log.warning(
                "column(s) %s hold values longer than generation.max_value_chars=%d characters or "
                "line breaks: rules never use them, and prompts show their values cut to %d "
                "characters",
                ", ".join(map(repr, self.free_text_)),
                cap,
                cap,
            )
        return self

    def fit(
        self, df: DataFrame | None = None, *, run: Run | None = None, rules: Discovery | None = None
    ) -> DateSynthesizer:
        """Prepare, then discovery -> generation -> selection. With `run`, stage results are saved
        under it and finished stages are loaded rather than recomputed. With `rules` (another
        fit's `rules_` on the same input and split), discovery is not run again: comparing
        generators on the same rules costs one discovery."""
        if not hasattr(self, "data_"):
            self.prepare(df)
        cfg = self.config
        self._named_segments()  # a bad evaluation.segments rule fails before any LLM call
        # Discovery sees the training split only: the validation split is the confirmation's.
        train = self.data_.where(F.col(SPLIT_COL) == TRAIN)

        with self._timed("discovery"):
            self.rules_ = stage(
                run,
                "discovery",
                lambda: self._discover(train) if rules is None else rules,
                Discovery.load,
                Discovery.save,
                Discovery.summary,
            )
        if not self.rules_.dgrs:
            log.warning("discovery found no rule within rho; nothing to generate for")

        with self._timed("generation"):
            self.generation_ = stage(
                run,
                "generation",
                self._generate,
                lambda d: GenerationResult.load(d, generator=cfg.generation.generator),
                GenerationResult.save,
                GenerationResult.summary,
            )
        self.arms_: pd.DataFrame = self.generation_.arms

        with self._timed("selection"):
            self.selection_ = stage(
                run,
                "selection",
                self._select,
                Selection.load,
                Selection.save,
                lambda s: s.summary(rules_found=bool(self.rules_.dgrs)),
            )
        return self

    def _generate(self) -> GenerationResult:
        cfg = self.config
        if not self.rules_.dgrs:
            empty = pd.DataFrame()
            return GenerationResult(
                empty, arms_table(empty, self.schema_.target), [], cfg.generation.generator
            )
        route = self.rules_.route(column=DGR_COL)
        use_local = cfg.uses_embedded_model
        with contextlib.ExitStack() as stack:
            base_url = cfg.llm.base_url
            if use_local:
                from date_spark.llm.local import LocalModelServer

                log.info("generation: starting the embedded model (%s)", cfg.llm.local.model_alias)
                base_url = stack.enter_context(LocalModelServer(cfg.llm.local))
            gen = Generator(
                self.data_, self.rules_, self.schema_, cfg, route=route, base_url=base_url
            )
            result = gen.run()
        self.partition_sample_ = gen.sample_pd
        self._sample_is_generators = True  # its row labels are the ones rows' parents name
        return result

    def _evaluators(self, cfg: Config) -> tuple[CrossFitEvaluator, CrossFitEvaluator]:
        """The search's screen and confirmation evaluators (`selection.evaluators`), cached per
        model setting: `select()` reruns reuse their fits."""
        sel = cfg.selection
        key = (sel.model, sel.loss, sel.folds, sel.model_max_depth)
        cache: dict[Any, tuple[CrossFitEvaluator, CrossFitEvaluator]] = self.__dict__.setdefault(
            "_evaluator_cache", {}
        )
        if key not in cache:
            cache[key] = search_evaluators(
                self._partition_sample(),
                {str(d.rule_id): d.rule for d in self.rules_.dgrs},
                self.schema_.names,
                part=DGR_COL,
                rest=REST,
                target=self.schema_.target,
                encode=self.rules_.encoder.transform,
                model=ModelSpec.for_table(sel, self.schema_, self.rules_.encoder, seed=cfg.seed),
                folds=sel.folds,
                seed=cfg.seed,
            )
        return cache[key]

    def _partition_sample(self) -> pd.DataFrame:
        """The capped per-DGR sample of non-test rows: generation's, or recomputed on resume."""
        sample = getattr(self, "partition_sample_", None)
        if sample is None:
            sample = self._resample()
            self.partition_sample_ = sample
        return sample

    def _resample(self) -> pd.DataFrame:
        """The capped per-DGR sample, recomputed (on resume after generation)."""
        from date_spark.generation import partition_sample

        routed = (
            self.data_.where(F.col(SPLIT_COL) != TEST)
            .transform(self.rules_.route(column=DGR_COL))
            .withColumn(DGR_COL, F.coalesce(F.col(DGR_COL), F.lit(REST)))
        )
        ids = [str(d.rule_id) for d in self.rules_.dgrs] + [REST]
        sample = partition_sample(
            routed, ids, self.config.generation.partition_sample_rows, self.config.seed
        )
        return to_pandas(
            sample.select(*[named_col(c) for c in self.schema_.names], DGR_COL, SPLIT_COL)
        )

    def discover(self, df: DataFrame | None = None) -> Discovery:
        """Stage 1 alone, on the training split as `fit` runs it (the validation split stays the
        confirmation's): to look at the rules before paying for generation. Sets `rules_`."""
        if not hasattr(self, "data_"):
            self.prepare(df)
        self.rules_ = self._discover(self.data_.where(F.col(SPLIT_COL) == TRAIN))
        return self.rules_

    def _discover(self, train: DataFrame) -> Discovery:
        cfg = self.config
        return discovery_stage.discover(
            train, self._discovery_schema(self.schema_), cfg.discovery, seed=cfg.seed
        )

    def _check_fitted(self, what: str, attribute: str) -> None:
        if attribute not in vars(self):
            raise NotFittedError(f"{what} needs a fitted synthesizer: call fit() first")

    def _prepared(self) -> None:
        """A loaded synthesizer reads its input again (the saved config's) before it needs rows."""
        if "data_" not in vars(self):
            self.prepare()

    def select(self, **overrides: Any) -> Selection:
        """Stage 3 again on the fitted arms with `selection.*` options overridden (for example
        ``strategy="forward"``, ``min_z=0``): compares strategies without new LLM calls. The
        fitted `selection_` is left as it was."""
        self._check_fitted("select()", "generation_")
        self._prepared()
        cfg = self.config.with_overrides({f"selection.{k}": v for k, v in overrides.items()})
        return self._select(cfg)

    def _select(self, cfg: Config | None = None) -> Selection:
        cfg = cfg or self.config
        empty = pd.DataFrame(columns=[*self.schema_.names, ARM])
        if not self.rules_.dgrs:
            return Selection([], empty, [], float("nan"), float("nan"), cfg.selection.strategy,
                             "no rule found")  # fmt: skip
        if cfg.selection.rule == "paper":
            cfg = cfg.with_overrides({"selection.min_z": 0.0, "selection.confirm": False})
        generated, copies = self._generated_rows()
        if cfg.selection.rule == "gain":
            result = self._select_gain(cfg, generated)
        else:
            result = self._search(cfg)
        result.copies = copies
        if result.rows.empty:
            result.rows = empty
        return result

    def _generated_rows(self) -> tuple[pd.DataFrame, Any]:
        """Every generated row the label check let through (input columns, arm, partition),
        without the exact copies of a real row, and the copy count (`selection.copies`)."""
        names = self.schema_.names
        rows = self.generation_.rows
        if not len(rows):
            return pd.DataFrame(columns=[*names, ARM, DGR_COL]), None
        rows = rows[~rows[ARM].astype(str).str.endswith(".rejected")]
        keep = [*names, ARM, DGR_COL]
        if REQUEST_COL in rows.columns and getattr(self, "_sample_is_generators", False):
            # parents named by the generator, as labels of the partition sample it drew from
            rows = rows.assign(**{PARENTS: rows[REQUEST_COL].map(request_parents)})
            keep.append(PARENTS)
        rows = rows[keep]
        enc = self.rules_.encoder
        return drop_copies(
            rows.reset_index(drop=True), self._real_rows()[names], self._collected()[1][names],
            target=self.schema_.target, encode=enc.transform,
            categorical=enc.categorical_indices,
        )  # fmt: skip

    def _collected(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The non-test and test rows, collected once (seeded samples of at most
        `evaluation.max_rows`): the utility's rows and the copy check's test rows."""
        if not hasattr(self, "_utility_rows"):
            from date_spark.evaluation.utility import collect

            cfg = self.config
            self._utility_rows = collect(
                self.data_, self.schema_, max_rows=cfg.evaluation.max_rows, seed=cfg.seed
            )
        return self._utility_rows

    def _real_rows(self) -> pd.DataFrame:
        """The capped per-partition sample of non-test rows (input columns + partition)."""
        return self._partition_sample()[[*self.schema_.names, DGR_COL]]

    def _select_gain(self, cfg: Config, generated: pd.DataFrame) -> Selection:
        """The gain rule; its evaluator is kept per model setting, so `select()` reruns (another
        `keep_z`, other volumes) reuse every fit already made."""
        enc, sel = self.rules_.encoder, cfg.selection
        model = ModelSpec.for_table(sel, self.schema_, enc, seed=cfg.seed)
        real = self._real_rows()
        key = (sel.model, sel.loss, sel.folds, sel.repeats, sel.max_rows, sel.model_max_depth)
        cache: dict[Any, Any] = self.__dict__.setdefault("_gain_evaluators", {})
        if key not in cache:
            cache[key] = gain_evaluator(
                real[self.schema_.names], sel, target=self.schema_.target,
                encode=enc.transform, model=model, seed=cfg.seed,
            )  # fmt: skip
        return select_by_gain(
            generated, real, sel, part=DGR_COL, target=self.schema_.target,
            encode=enc.transform, model=model, seed=cfg.seed, evaluator=cache[key],
            rules={str(t.rule_id): t.rule for t in self.rules_.thin},
        )  # fmt: skip

    def _search(self, cfg: Config) -> Selection:
        """The paper's search (`selection.rule: holm | paper`) over the candidate arms, each
        without its copies of real rows."""
        kinds, names, enc = self.schema_.kinds, self.schema_.names, self.rules_.encoder
        found = self.generation_.candidates(names, kinds)
        real, test = self._real_rows()[names], self._collected()[1][names]
        arms = []
        for c in found:
            rows, _ = drop_copies(
                c.rows, real, test, target=self.schema_.target, encode=enc.transform,
                categorical=enc.categorical_indices,
            )  # fmt: skip
            arms.append(Arm(**{**c._asdict(), "rows": rows}))
        screen, confirm = self._evaluators(cfg)
        result = select(arms, screen, cfg.selection, kinds=kinds, seed=cfg.seed, confirm=confirm)
        if not arms:
            result.stop_reason = "no candidate arm (no generated group lowered the screening loss)"
        return result

    def _named_segments(self) -> dict[str, Any]:
        """`evaluation.segments` parsed against the table's columns."""
        out = {}
        for name, text in self.config.evaluation.segments.items():
            try:
                out[name] = parse_rule(text, self.schema_.kinds)
            except DateSparkError as exc:
                raise ConfigError(
                    f"evaluation.segments.{name}: {exc}; write it in the rule grammar over the "
                    f"table's columns, e.g. \"age >= 40 and region in ('east')\""
                ) from None
        return out

    def utility(self, selection: Selection | None = None) -> Utility:
        """The test-split utility of `selection` (default: the fitted one): partition gain and
        synthetic gains with bootstrap intervals (`date_spark.evaluation.utility`). The collected
        train and test rows are kept, so comparing several selections collects them once."""
        from date_spark.evaluation.utility import utility

        self._check_fitted("utility()", "rules_")
        self._prepared()
        cfg = self.config
        sel = selection if selection is not None else self.selection_
        train, test = self._collected()
        model = ModelSpec.for_table(
            cfg.selection, self.schema_, self.rules_.encoder, seed=cfg.seed,
            kind=cfg.evaluation.model,
        )  # fmt: skip
        return utility(
            train,
            test,
            {str(d.rule_id): d.rule for d in self.rules_.dgrs},
            sel.rows,
            self.schema_,
            self.rules_.encoder.transform,
            model,
            resamples=cfg.evaluation.bootstrap,
            confidence=cfg.evaluation.confidence,
            seed=cfg.seed,
            thin={t.rule_id: t.rule for t in self.rules_.thin},
            named=self._named_segments(),
        )

    def _evaluate(self, run: Run, written: dict[str, Any]) -> dict[str, Any]:
        """The test-split utility plus fidelity, privacy and validity of the kept rows; the
        report goes under the run, beside a path output, and into MLflow. With no kept row the
        report still exists and says why."""
        from date_spark.evaluation.run_report import write_run_report

        log.info(
            "evaluation: test-split loss without partitions, with a model per rule, and with the "
            "%d kept rows (bootstrap intervals)",
            self.selection_.n_rows,
        )
        self.utility_ = self.utility()
        metrics = self.utility_.metrics()
        self.evaluation_metrics_: dict[str, float] = {f"utility.{k}": v for k, v in metrics.items()}
        out_dir = run.stage_dir("evaluation")
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out_dir / "utility.json", self.utility_.to_dict())
        summary: dict[str, Any] = {"utility": self.utility_.to_dict()}
        result = self._kept_quality(run) if self.selection_.n_rows else None
        if result is not None:
            result.utility = metrics
            self.evaluation_metrics_.update(result.metrics())
        log.info("evaluation: writing the report")
        html = write_run_report(
            out_dir,
            run_id=run.run_id,
            cfg=self.config,
            rules=self.rules_,
            arms=self.arms_,
            selection=self.selection_,
            utility=self.utility_,
            metrics=metrics,
            result=result,
            task=self.schema_.task,
        )
        summary["html"] = str(html.resolve())
        if result is not None:
            summary["fidelity"] = result.metrics().get("fidelity.overall")
        return summary

    def _kept_quality(self, run: Run) -> Any:
        """Fidelity, privacy and validity of the kept rows against the training rows."""
        from date_spark.evaluation import evaluate

        names = self.schema_.names
        split = F.col(SPLIT_COL)
        train = self.data_.where(split != TEST).select(*[named_col(c) for c in names])
        holdout = self.data_.where(split == TEST).select(*[named_col(c) for c in names])
        synthetic = self.sample(run.run_id).select(*[named_col(c) for c in names], RULE)
        log.info(
            "evaluation: fidelity, privacy and validity of %d synthetic rows against the "
            "training rows",
            self.selection_.n_rows,
        )
        return evaluate(
            train, synthetic, self.schema_, holdout=holdout, train=train, rule_column=RULE
        )

    def kept_text(self, power: bool = True, selection: Selection | None = None) -> str:
        """One line: what was kept and why, or why nothing was (`Selection.explain`; `power`: with
        what the confirmation rows could have shown, which the report shows as a table)."""
        if selection is None:
            self._check_fitted("kept_text()", "selection_")
        s = selection if selection is not None else self.selection_
        return s.explain(power=power, rules_found=bool(self.rules_.dgrs))

    # -- sample ---------------------------------------------------------------------------------
    def sample(self, run_id: str = "adhoc") -> DataFrame:
        """The kept synthetic rows in the input's schema plus provenance (a Spark DataFrame)."""
        self._check_fitted("sample()", "selection_")
        sel = self.selection_.rows.copy()
        arms = self.arms_.set_index("arm_id") if len(self.arms_) else None
        if len(sel) and arms is not None:
            sel[RULE] = sel[ARM].map(arms["rule"])
            sel[ROUND] = sel[ARM].map(arms["round"])
            sel[GENERATOR] = sel[ARM].map(arms["generator"])
        else:
            for c in (ARM, RULE, ROUND, GENERATOR):
                sel[c] = pd.Series(dtype=object)
        return output.synthetic_frame(
            self._session(),
            sel,
            self.input_schema_,
            run_id=run_id,
            run_date=self.config.output.run_date,
        )

    # -- save / load ----------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Keep a fitted synthesizer: each stage's result saved the way a run saves it (atomically,
        `discovery/`, `generation/`, `selection/`), the input's schema and the config (no secrets;
        written last, so a directory with `config.json` is complete). `load` gives back one that
        samples, explains and reselects from saved rows without an LLM call."""
        self._check_fitted("save()", "selection_")
        root = Path(directory)
        if root.exists() and any(root.iterdir()):
            # stage files of another fit would mix with this one's if the save stopped midway
            raise OutputError(
                f"{str(root)!r} is not empty; save a synthesizer into a new or empty directory"
            )
        self.rules_.save(root / "discovery")
        self.generation_.save(root / "generation")
        self.selection_.save(root / "selection")
        write_text_atomic(root / "input_schema.json", self.input_schema_.json())
        write_json_atomic(root / "config.json", self.config.redacted())
        return root

    @classmethod
    def load(cls, directory: str | Path, spark: SparkSession | None = None) -> DateSynthesizer:
        """A synthesizer `save` kept; `select()` and `utility()` read the input again (from the
        saved config) when called."""
        root = Path(directory)
        saved = root / "config.json"
        if not saved.is_file():
            raise ConfigError(
                f"{str(root)!r} holds no saved synthesizer (no config.json); save one with "
                f"DateSynthesizer.save(path) after fit()"
            )
        synth = cls(load_config(base=json.loads(saved.read_text(encoding="utf-8"))), spark)
        synth.rules_ = Discovery.load(root / "discovery")
        gen = synth.config.generation.generator
        synth.generation_ = GenerationResult.load(root / "generation", generator=gen)
        synth.arms_ = synth.generation_.arms
        synth.selection_ = Selection.load(root / "selection")
        schema = json.loads((root / "input_schema.json").read_text(encoding="utf-8"))
        synth.input_schema_ = T.StructType.fromJson(schema)
        return synth

    # -- run ------------------------------------------------------------------------------------
    def run(self, df: DataFrame | None = None, resume: str | None = None) -> RunResult:
        """The whole job. Input problems raise before anything is written."""
        with watch_sigint(self), contextlib.ExitStack() as held:
            self._held = held  # the output's writer lock, taken once the input passed its checks
            return self._run(df, resume)

    def _interrupted(self, run: Run) -> Interrupted:
        done = [s for s in STAGES if run.is_done(s)]
        during = getattr(self, "stage_", None)
        return Interrupted(
            f"interrupted{f' during {during}' if during else ''}; run {run.run_id} "
            f"finished: {', '.join(done)}; continue with --resume {run.run_id}",
            run_id=run.run_id,
        )

    def _stopped(self, exc: BaseException) -> bool:
        """A Ctrl-C arrived: whatever failed after it (a Python worker killed mid-transfer shows
        up as a Java error) is the interruption, not a crash."""
        return bool(getattr(self, "sigint_", False)) or interrupted_by(exc)

    def _run(self, df: DataFrame | None, resume: str | None) -> RunResult:
        from date_spark.io.preflight import check_llm, check_output, check_places

        cfg = self.config
        if df is None or (not cfg.output.path and not cfg.output.table):
            check_output(cfg.input, cfg.output)
        check_places(cfg)  # an unwritable output, runs or cache directory: refused now
        # A resume is checked before any work: a config that changes a finished stage is refused
        # by name, a changed input once it is read; neither writes anything.
        resumed = open_run(cfg.output.runs_dir, resume) if resume else None
        if resumed is None or not resumed.is_done("generation"):
            check_llm(cfg)  # an unset key or a missing local model: refused before any directory
        changed = check_resume_config(resumed, cfg) if resumed else []
        self.seconds_ = {}
        opening = warm_store(cfg)  # MLflow's store opens while the input is read
        warm_workers()  # and the driver's worker processes start
        self._prepare_input(df)
        out = cfg.output  # one writer per output (path or table)
        self._held.enter_context(writer_lock(out.path, table=out.table, runs_dir=out.runs_dir))
        run = self._open_run(df, resumed, changed)
        run.finish_stage(
            "prepare", {"profile": self.profile_.to_dict(), "free_text_columns": self.free_text_}
        )
        result = RunResult(run.run_id, str(run.root), ["prepare"])
        try:
            self._tracked_stages(run, result, opening)
        except KeyboardInterrupt:
            raise self._interrupted(run) from None
        except DateSparkError as err:
            raise self._resumable(run, err) from err
        except Exception as exc:
            if not self._stopped(exc):
                raise
            raise self._interrupted(run) from None
        result.stages_done = [s for s in STAGES if run.is_done(s)]
        result.summary = self._run_summary()
        run.update(summary=result.summary, mlflow_run_id=result.mlflow_run_id)
        return result

    def _prepare_input(self, df: DataFrame | None) -> None:
        """`prepare`, with an interrupt turned into "nothing was written, run it again"."""
        try:
            self.prepare(df)
        except (KeyboardInterrupt, Exception) as exc:
            crash = isinstance(exc, Exception) and not self._stopped(exc)
            if crash or isinstance(exc, DateSparkError):
                raise
            raise Interrupted(
                "interrupted while reading the input, before the run started; nothing was "
                "written; run the same command again"
            ) from None

    def _open_run(self, df: DataFrame | None, resumed: Run | None, changed: list[str]) -> Run:
        """The resumed run (its input checked against the fingerprint) or a new run directory."""
        cfg = self.config
        source: dict[str, Any] = (
            {"path": cfg.input.path, "format": cfg.input.format}
            if df is None and cfg.input.path
            else {"table": cfg.input.table}
            if df is None
            else {"dataframe": True}
        )
        fingerprint = input_fingerprint(self.raw_, source, self.profile_.rows)
        if resumed is not None:
            check_resume_input(resumed, fingerprint)
            m = resumed.manifest()
            history = [*m.get("resumes", []), {"at": _now(), "changed": changed}]
            resumed.update(config=cfg.redacted(), resumes=history)
            if "input_fingerprint" not in m:
                resumed.update(input_fingerprint=fingerprint)
            return resumed
        run = start_run(cfg.output.runs_dir)
        run.update(
            run_id=run.run_id,
            config=cfg.redacted(),
            input_schema=self.schema_.to_json(),
            input_fingerprint=fingerprint,
        )
        return run

    def _tracked_stages(
        self, run: Run, result: RunResult, opening: threading.Thread | None = None
    ) -> None:
        """The three stages, the output and the evaluation, each logged to MLflow as it ends
        (`opening`: `warm_store`'s thread, joined before the store is used)."""
        cfg = self.config
        with Tracker(cfg, run.run_id, stopped=self._stopped, opening=opening) as tracker:
            result.mlflow_run_id = tracker.mlflow_run_id
            tracker.metrics({"rows_in": self.profile_.rows})
            self.fit(run=run)
            tracker.metrics(self.rules_.summary(), prefix="discovery_")
            tracker.metrics(self.generation_.metrics(), prefix="generation_")
            for r in self.generation_.rounds:
                tracker.metrics({k: v for k, v in r.llm.items()}, prefix=f"llm_round{r.round}_")
            rules_found = bool(self.rules_.dgrs)
            tracker.metrics(self.selection_.summary(rules_found=rules_found), prefix="selection_")
            tracker.metrics(self.selection_.power_metrics(), prefix="power.")
            with self._timed("output"):
                out = self.sample(run.run_id)
                if cfg.output.mode == "augmented":
                    out = output.input_frame(
                        self.raw_, run_id=run.run_id, run_date=cfg.output.run_date
                    ).unionByName(out)
                written = output.write(out, cfg.output, staging_dir=run.root / "output_staging")
            run.finish_stage("output", written)
            result.output = written
            tracker.metrics(
                {"rows_out": written["rows"], "synthetic_rows_out": written["synthetic_rows"]}
            )
            tracker.metrics({f"seconds_{k}": v for k, v in self.seconds_.items()})
            with self._timed("evaluation"):
                report = self._evaluate(run, written)
            run.finish_stage("evaluation", report)
            result.output["report"] = report.get("html")
            tracker.metrics(self.evaluation_metrics_)
            for stage in ("discovery", "generation", "selection", "evaluation"):
                tracker.artifact(run.stage_dir(stage), stage)
            tracker.artifact(run.manifest_path)

    def _resumable(self, run: Run, err: DateSparkError) -> DateSparkError:
        """The error, with what finished and the command that continues the run."""
        cfg = self.config
        done = [s for s in STAGES if run.is_done(s)]
        where = (
            ""
            if cfg.output.runs_dir == OutputConfig().runs_dir
            else f" --set output.runs_dir={cfg.output.runs_dir}"
        )
        return type(err)(
            f"{err} (run {run.run_id} finished: {', '.join(done)}; "
            f"continue with --resume {run.run_id}{where})"
        )

    def _run_summary(self) -> dict[str, Any]:
        rejected, by_column, clipped = self.generation_.rejects()
        utility = getattr(self, "utility_", None)
        summary: dict[str, Any] = {
            "headline": utility.headline() if utility is not None else "",
            "kept": self.kept_text(),
            "profile": self.profile_.summary(),
            "rules": len(self.rules_.dgrs),
            "valid_rows": sum(r.valid_rows for r in self.generation_.rounds),
            "asked": self.generation_.asked,
            "copies": self.selection_.copies.text() if self.selection_.copies else "",
            "rejected_rows": rejected,
            # violates_rule rows re-routed to the partition they satisfy, by partition
            "rerouted_rows": self.generation_.rerouted_to(),
            "rejected_by_column": by_column,
            "clipped": clipped,
            "arms": len(self.arms_),
            "candidate_arms": int(self.arms_["candidate"].sum()) if len(self.arms_) else 0,
            "selected_arms": len(self.selection_.selected),
            "synthetic_rows": self.selection_.n_rows,
            "budget_exhausted": self.generation_.budget_exhausted,
            "seconds": dict(self.seconds_),
        }
        if not self.selection_.n_rows:
            summary["nothing_kept"] = nothing_kept_reason(
                self.selection_,
                rules_found=bool(self.rules_.dgrs),
                generated_rows=len(self.generation_.rows),
                rejected=self.generation_.summary().get("rejected") or {},
            )
        return summary


def _now() -> str:
    import datetime as dt

    return dt.datetime.now(dt.timezone.utc).isoformat()
