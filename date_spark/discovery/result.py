"""What discovery found (`Discovery`): the DGRs with their models, the global model and the
search's record; how it routes rows to DGRs and predicts on Spark, and how it is saved and loaded.
The search itself is in `date_spark.discovery`."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from date_spark.columns import pandas_safe, restore_names
from date_spark.errors import DiscoveryError, InputError
from date_spark.modeling.features import FeatureEncoder
from date_spark.modeling.models import one_thread
from date_spark.rules import Conjunction, Rule, assign_rules
from date_spark.schema import Kind, TableSchema
from date_spark.tracking.atomic import atomic_path, write_text_atomic

__all__ = ["DGR", "Discovery", "LevelStats", "Part", "Thin", "spark_type"]

_FORMAT_VERSION = 1
_FILE = "discovery.json"  # in a run's stage directory


def _dumps(obj: Any) -> bytes:
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


# ================================================================================================
# Results
# ================================================================================================


@dataclass(frozen=True)
class DGR:
    """One distribution-guiding rule: a DNF condition and the model that explains its rows."""

    rule_id: str
    rule: Rule
    model_id: int
    support: int
    val_error: float


@dataclass(frozen=True)
class Part:
    """One accepted conjunction: which model serves it and how it got there."""

    conjunction: Conjunction
    model_id: int
    support: int
    val_error: float
    level: int
    shared: bool


@dataclass(frozen=True)
class LevelStats:
    level: int
    candidates: int  # popped from the queue
    evaluated: int  # with enough rows, sampled and sent to the UDF
    accepted: int  # new models
    shared: int  # joined an existing model
    rejected: int
    deferred: int
    dropped: int  # too few rows
    trainings: int
    covered_rows: int
    coverage: float
    scans: float | None  # full passes over the table, measured (None: not measured)
    seconds: float


@dataclass(frozen=True)
class Thin:
    """A region the search dropped because it holds fewer training rows than the support floor
    (`min_rows`, `min_support`) but at least `thin_min_rows`: served by the global model, and
    still a segment where generated rows may help (generation prompts it, selection scores it in
    the rest partition)."""

    rule_id: str
    rule: Rule
    support: int


class Discovery:
    """What `discover` found: DGRs with their models, the global model and the search's record."""

    def __init__(
        self,
        *,
        dgrs: list[DGR],
        parts: list[Part],
        models: dict[int, Any],
        global_model: Any,
        encoder: FeatureEncoder,
        schema: TableSchema,
        rho: float,
        rho_mode: str,
        incomplete: bool,
        levels: list[LevelStats],
        trainings: int,
        shared: int,
        n_rows: int,
        stats: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
        thin: Sequence[Thin] = (),
    ) -> None:
        self.dgrs = dgrs
        self.thin: list[Thin] = list(thin)
        self.parts = parts
        self.models = models
        self.global_model = global_model
        self.encoder = encoder
        self.schema = schema
        self.rho = rho
        self.rho_mode = rho_mode
        self.incomplete = incomplete
        self.levels = levels
        self.trainings = trainings
        self.shared = shared
        self.n_rows = n_rows
        self.stats: dict[str, Any] = dict(stats or {})
        self.config: dict[str, Any] = dict(config or {})

    # -- summaries -------------------------------------------------------------------------------
    @property
    def covered_rows(self) -> int:
        return sum(p.support for p in self.parts)

    @property
    def coverage(self) -> float:
        return self.covered_rows / self.n_rows if self.n_rows else 0.0

    def rules(self) -> dict[str, Rule]:
        return {d.rule_id: d.rule for d in self.dgrs}

    def __repr__(self) -> str:
        return (
            f"Discovery({len(self.dgrs)} DGRs, {len(self.parts)} conjunctions, "
            f"coverage={self.coverage:.3f}, rho={self.rho:.4g}, incomplete={self.incomplete})"
        )

    # -- Spark -----------------------------------------------------------------------------------
    def route(
        self, mode: str = "first", column: str = "_date_rule_id"
    ) -> Callable[[DataFrame], DataFrame]:
        """`DataFrame -> DataFrame` tagging each row with its DGR id (null: uncovered). One
        projection; rules are disjoint, so "first" and "all" agree on the training rows."""
        if mode not in ("first", "all"):
            raise DiscoveryError(f"route mode must be 'first' or 'all', not {mode!r}")
        return assign_rules(self.rules(), mode, column)  # type: ignore[arg-type]

    def predict(self, column: str = "_date_pred") -> Callable[[DataFrame], DataFrame]:
        """`DataFrame -> DataFrame` adding `column`: each row's prediction by its DGR's model, or
        by the global model when no DGR covers it. One `mapInPandas` pass; the models travel as
        bytes in the function's closure."""
        if self.global_model is None or any(d.model_id not in self.models for d in self.dgrs):
            raise DiscoveryError(
                "this Discovery has no fitted models (loaded from JSON alone); use Discovery.load"
            )
        payload = _dumps(
            {
                "encoder": self.encoder,
                "task": self.schema.task,
                "rules": [(d.rule.dumps(), _dumps(self.models[d.model_id])) for d in self.dgrs],
                "global": _dumps(self.global_model),
            }
        )
        out_type = _prediction_type(self.schema)
        kinds = self.encoder.kinds
        needed = self.encoder.names

        def transform(df: DataFrame) -> DataFrame:
            missing = [c for c in needed if c not in df.columns]
            if missing:
                raise InputError(f"cannot predict: columns {missing} are missing from the frame")
            base = df.drop(column) if column in df.columns else df
            schema = T.StructType([*base.schema.fields, T.StructField(column, out_type, True)])

            safe, back = pandas_safe(base)  # dotted or backticked names: aliased
            order = base.columns

            def fn(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
                named = (restore_names(b, back) for b in batches)
                return (
                    out[[*order, column]] for out in _predict_batches(named, payload, column, kinds)
                )

            return safe.mapInPandas(fn, schema)

        return transform

    def rules_frame(self, spark: SparkSession) -> DataFrame:
        """rule_id, rule text, model_id, support, val_error, conjunctions: one row per DGR."""
        rows = [
            (
                d.rule_id,
                d.rule.to_text(),
                d.model_id,
                d.support,
                float(d.val_error),
                len(d.rule.conjunctions),
            )
            for d in self.dgrs
        ]
        return spark.createDataFrame(
            rows,
            "rule_id string, rule string, model_id int, support long, val_error double, "
            "conjunctions int",
        )

    # -- persistence -----------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "format": "date-spark/discovery",
            "version": _FORMAT_VERSION,
            "schema": json.loads(self.schema.to_json()),
            "encoder": self.encoder.to_json(),
            "rho": self.rho,
            "rho_mode": self.rho_mode,
            "incomplete": self.incomplete,
            "trainings": self.trainings,
            "shared": self.shared,
            "n_rows": self.n_rows,
            "dgrs": [
                {
                    "rule_id": d.rule_id,
                    "rule": d.rule.to_json(),
                    "text": d.rule.to_text(),
                    "model_id": d.model_id,
                    "support": d.support,
                    "val_error": d.val_error,
                }
                for d in self.dgrs
            ],
            "parts": [
                {
                    "conjunction": p.conjunction.to_json(),
                    "model_id": p.model_id,
                    "support": p.support,
                    "val_error": p.val_error,
                    "level": p.level,
                    "shared": p.shared,
                }
                for p in self.parts
            ],
            "levels": [asdict(s) for s in self.levels],
            "thin": [
                {"rule_id": t.rule_id, "rule": t.rule.to_json(), "support": t.support}
                for t in self.thin
            ],
            "stats": _jsonable(self.stats),
            "config": _jsonable(self.config),
        }

    @staticmethod
    def from_json(
        d: Mapping[str, Any],
        models: Mapping[int, Any] | None = None,
        global_model: Any = None,
    ) -> Discovery:
        """Rebuild from `to_json()`; pass the fitted models (or use `load`) to `predict`."""
        if d.get("format") != "date-spark/discovery":
            raise DiscoveryError("not a date-spark discovery file (missing format marker)")
        schema = TableSchema.from_json(json.dumps(d["schema"]))
        kinds = schema.kinds
        dgrs = [
            DGR(
                str(x["rule_id"]),
                Rule.from_json(x["rule"], kinds),
                int(x["model_id"]),
                int(x["support"]),
                float(x["val_error"]),
            )
            for x in d["dgrs"]
        ]
        parts = [
            Part(
                Rule.from_json({"any": [p["conjunction"]]}, kinds).conjunctions[0],
                int(p["model_id"]),
                int(p["support"]),
                float(p["val_error"]),
                int(p["level"]),
                bool(p["shared"]),
            )
            for p in d.get("parts", [])
        ]
        return Discovery(
            dgrs=dgrs,
            parts=parts,
            models={int(k): v for k, v in (models or {}).items()},
            global_model=global_model,
            encoder=FeatureEncoder.from_json(d["encoder"]),
            schema=schema,
            rho=float(d["rho"]),
            rho_mode=str(d.get("rho_mode", "absolute")),
            incomplete=bool(d["incomplete"]),
            levels=[LevelStats(**s) for s in d.get("levels", [])],
            trainings=int(d.get("trainings", 0)),
            shared=int(d.get("shared", 0)),
            n_rows=int(d.get("n_rows", 0)),
            stats=d.get("stats"),
            config=d.get("config"),
            thin=[
                Thin(str(t["rule_id"]), Rule.from_json(t["rule"], kinds), int(t["support"]))
                for t in d.get("thin", [])
            ],
        )

    @staticmethod
    def models_path(path: str | Path) -> Path:
        p = Path(path)
        return p.with_name(p.stem + ".models.pkl")

    @staticmethod
    def json_path(target: str | Path) -> Path:
        """`target` itself when it names a `.json` file, else `discovery.json` in that directory."""
        p = Path(target)
        return p if p.suffix == ".json" else p / _FILE

    def save(self, target: str | Path) -> Path:
        """Write the pickled models to `<stem>.models.pkl` (a pickle: load only files this library
        wrote), then the rules as JSON (last, so a file set without it holds no result), each
        atomically, under `target`: a stage directory (`discovery.json`) or a `.json` file.
        Returns `target`, which `load` takes."""
        p = self.json_path(target)
        blob = {
            "models": {k: _dumps(m) for k, m in self.models.items()},
            "global": _dumps(self.global_model),
        }
        with atomic_path(self.models_path(p)) as tmp:
            tmp.write_bytes(_dumps(blob))
        write_text_atomic(p, json.dumps(self.to_json(), indent=2, sort_keys=True))
        return Path(target)

    @classmethod
    def load(cls, target: str | Path) -> Discovery:
        """What `save` wrote under `target` (a stage directory or a `.json` file)."""
        p = cls.json_path(target)
        if not p.is_file():
            raise DiscoveryError(f"discovery file {str(p)!r} does not exist")
        try:
            d = json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise DiscoveryError(
                f"discovery file {str(p)!r} is not valid JSON: {err.msg}"
            ) from None
        mp = cls.models_path(p)
        models: dict[int, Any] = {}
        global_model = None
        if mp.is_file():
            blob = pickle.loads(mp.read_bytes())
            models = {int(k): pickle.loads(v) for k, v in blob["models"].items()}
            global_model = pickle.loads(blob["global"])
        return cls.from_json(d, models, global_model)

    def summary(self) -> dict[str, Any]:
        """The counts a run's manifest and MLflow keep for this stage."""
        return {
            "rules": len(self.dgrs),
            "thin_segments": len(self.thin),
            "coverage": round(float(self.coverage), 4),
            "trainings": self.trainings,
            "shared": self.shared,
            "incomplete": self.incomplete,
            "rho": self.rho,
        }


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


def _prediction_type(schema: TableSchema) -> T.DataType:
    if schema.task == "regression":
        return T.DoubleType()
    return spark_type(schema.column(schema.target).spark_type)


def spark_type(simple: str) -> T.DataType:
    """A Spark type from its simpleString (no JVM round trip, so it works on Spark Connect)."""
    s = simple.strip().lower()
    table: dict[str, T.DataType] = {
        "tinyint": T.ByteType(),
        "byte": T.ByteType(),
        "smallint": T.ShortType(),
        "short": T.ShortType(),
        "int": T.IntegerType(),
        "integer": T.IntegerType(),
        "bigint": T.LongType(),
        "long": T.LongType(),
        "float": T.FloatType(),
        "double": T.DoubleType(),
        "string": T.StringType(),
        "boolean": T.BooleanType(),
        "date": T.DateType(),
        "timestamp": T.TimestampType(),
    }
    if s in table:
        return table[s]
    if s.startswith("decimal"):
        inner = s[s.find("(") + 1 : s.find(")")] if "(" in s else "10,0"
        prec, scale = (int(x) for x in inner.split(","))
        return T.DecimalType(prec, scale)
    return T.StringType()


def _predict_batches(
    batches: Iterator[pd.DataFrame], payload: bytes, column: str, kinds: Mapping[str, Kind]
) -> Iterator[pd.DataFrame]:
    with one_thread():
        yield from _predict_batches_inner(batches, payload, column, kinds)


def _predict_batches_inner(
    batches: Iterator[pd.DataFrame], payload: bytes, column: str, kinds: Mapping[str, Kind]
) -> Iterator[pd.DataFrame]:
    state = pickle.loads(payload)
    enc: FeatureEncoder = state["encoder"]
    task = state["task"]
    rules = [(Rule.from_json(r, kinds), pickle.loads(m)) for r, m in state["rules"]]
    glob = pickle.loads(state["global"])
    for pdf in batches:
        n = len(pdf)
        if n == 0:
            yield pdf.assign(**{column: pd.Series([], dtype=object)})
            continue
        X = enc.transform(pdf)
        pred = np.empty(n, dtype=np.float64 if task == "regression" else object)
        done = np.zeros(n, dtype=bool)
        for rule, model in rules:
            m = rule.mask(pdf).to_numpy(dtype=bool) & ~done
            if m.any():
                pred[m] = model.predict(X[m])
                done |= m
        if (~done).any():
            pred[~done] = glob.predict(X[~done])
        out = pd.Series(pred, index=pdf.index)
        if task != "regression":
            out = out.map(lambda v: v.item() if hasattr(v, "item") else v)
        yield pdf.assign(**{column: out})
