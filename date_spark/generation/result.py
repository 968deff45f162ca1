"""What generation returns: per-round statistics, the generated rows, the arms table, and their
save/load beside the run's other stages."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd
from pyspark.sql import DataFrame, SparkSession

from date_spark.columns import ARM, GENERATOR, ROUND, RULE
from date_spark.generation.fields import AGREE_COL, CANDIDATE_COL, DGR_COL, GAIN_COL, PRED_COL
from date_spark.llm.validation import REASONS
from date_spark.rules import Rule, parse_rule
from date_spark.schema import Kind
from date_spark.tracking.atomic import atomic_path, write_text_atomic

__all__ = [
    "Candidate",
    "GenerationResult",
    "RoundStats",
    "add_gateway_stats",
    "arms_table",
    "count_arms",
    "ordered_table",
    "reject_table",
]


@dataclass
class RoundStats:
    round: int
    questions: int = 0
    requests: int = 0
    valid_rows: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # generated rows, one reason each
    # column -> reason -> rejected rows that failed on that column (a row may fail on several)
    rejected_by_column: dict[str, dict[str, int]] = field(default_factory=dict)
    clipped: dict[str, int] = field(default_factory=dict)  # column -> values clipped in kept rows
    groups: int = 0
    candidate_arms: int = 0
    rows_in_candidates: int = 0
    label_rejected: int = 0  # generated rows whose label the teacher contradicted (label_check)
    # `violates_rule` rows re-routed to the partition they satisfy (generation.reroute): still
    # counted in `rejected`, not in `valid_rows`; by the partition they went to
    rerouted: int = 0
    rerouted_to: dict[str, int] = field(default_factory=dict)
    proposed_rules: int = 0
    refined_rules_used: int = 0
    refined_dropped: dict[str, int] = field(default_factory=dict)
    llm: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


class Candidate(NamedTuple):
    """One candidate arm as generation hands it to selection (`selection.Arm(**c._asdict())`)."""

    arm_id: str
    dgr_id: str
    round: int
    rule: Rule
    rows: pd.DataFrame
    gain: float


@dataclass
class GenerationResult:
    rows: pd.DataFrame  # every generated row: input columns + meta + arm columns
    arms: pd.DataFrame  # one row per group: arm id, DGR, round, rule, n_rows, gain, labels
    rounds: list[RoundStats]
    generator: str
    budget_exhausted: bool = False
    prompts: list[str] = field(default_factory=list)  # every prompt sent, for audit and tests
    benefits: pd.DataFrame = field(default_factory=pd.DataFrame)  # per DGR: learning curve
    asked: str = ""  # how many rows were asked for, and why (`generation.rows_per_real_row`)

    @property
    def candidate_arms(self) -> pd.DataFrame:
        return self.arms[self.arms["candidate"]]

    def candidates(self, columns: Sequence[str], kinds: Mapping[str, Kind]) -> list[Candidate]:
        """Each candidate arm with its rows (the input `columns`) and its parsed rule: what
        selection takes as arms, so no caller reads the string-keyed arms table."""
        if not len(self.arms):
            return []
        cands = self.arms[self.arms["candidate"].astype(bool)]
        out = []
        for rec in cands.to_dict("records"):
            rows = self.rows[self.rows[ARM] == rec["arm_id"]][list(columns)]
            out.append(
                Candidate(
                    arm_id=str(rec["arm_id"]),
                    dgr_id=str(rec["dgr_id"]),
                    round=int(rec["round"]),
                    rule=parse_rule(rec["rule"], kinds),
                    rows=rows.reset_index(drop=True),
                    gain=float(rec["gain"]),
                )
            )
        return out

    def rejects(self) -> tuple[dict[str, int], dict[str, dict[str, int]], dict[str, int]]:
        """Over all rounds: rejected rows by reason, the per-column table, clipped values."""
        rejected: Counter[str] = Counter()
        table: dict[str, Counter[str]] = {}
        clipped: Counter[str] = Counter()
        for r in self.rounds:
            rejected.update(r.rejected)
            for col, reasons in r.rejected_by_column.items():
                table.setdefault(col, Counter()).update(reasons)
            clipped.update(r.clipped)
        return dict(rejected), ordered_table(table), dict(sorted(clipped.items()))

    def summary(self) -> dict[str, Any]:
        rejected, by_column, clipped = self.rejects()
        return {
            "generator": self.generator,
            "rounds": len(self.rounds),
            "generated_rows": len(self.rows),
            "valid_rows": sum(r.valid_rows for r in self.rounds),
            "groups": len(self.arms),
            "candidate_arms": int(self.arms["candidate"].sum()) if len(self.arms) else 0,
            "rejected": rejected,
            "rejected_by_column": by_column,
            "clipped": clipped,
            "refined_rules_used": sum(r.refined_rules_used for r in self.rounds),
            "label_rejected": sum(r.label_rejected for r in self.rounds),
            "rerouted": sum(r.rerouted for r in self.rounds),
            "rerouted_to": self.rerouted_to(),
            "budget_exhausted": self.budget_exhausted,
        }

    def rerouted_to(self) -> dict[str, int]:
        """Over all rounds: re-routed rows by the partition they went to."""
        total: Counter[str] = Counter()
        for r in self.rounds:
            total.update(r.rerouted_to)
        return dict(sorted(total.items()))

    def metrics(self) -> dict[str, float]:
        """The summary flattened for MLflow: `rejected_<reason>`,
        `rejected_by_column.<column>.<reason>` and `clipped.<column>` besides the counts."""
        s = self.summary()
        out = {k: float(v) for k, v in s.items() if isinstance(v, (int, float))}
        for reason, n in s["rejected"].items():
            out[f"rejected_{reason}"] = float(n)
        for col, reasons in s["rejected_by_column"].items():
            for reason, n in reasons.items():
                out[f"rejected_by_column.{col}.{reason}"] = float(n)
        for col, n in s["clipped"].items():
            out[f"clipped.{col}"] = float(n)
        for dgr, n in s["rerouted_to"].items():
            out[f"rerouted_to.{dgr}"] = float(n)
        return out

    def save(self, directory: str | Path) -> Path:
        """Rows, arms and learning curves as parquet, then `asked.json` and `rounds.json` (last:
        a directory without it holds no result), each atomically. Returns `directory`, which
        `load` takes."""
        d = Path(directory)
        for name, frame in (("rows", self.rows), ("arms", self.arms), ("benefits", self.benefits)):
            with atomic_path(d / f"{name}.parquet") as tmp:
                frame.to_parquet(tmp, index=False)
        asked = {"asked": self.asked, "generator": self.generator}
        write_text_atomic(d / "asked.json", json.dumps(asked))
        write_text_atomic(d / "rounds.json", json.dumps([asdict(r) for r in self.rounds], indent=2))
        return d

    @classmethod
    def load(cls, directory: str | Path, generator: str = "llm") -> GenerationResult:
        """What `save` wrote; `generator` names the generator of a run saved before `asked.json`
        recorded it."""
        d = Path(directory)
        rounds = [RoundStats(**r) for r in json.loads((d / "rounds.json").read_text())]
        bpath, apath = d / "benefits.parquet", d / "asked.json"
        meta = json.loads(apath.read_text()) if apath.exists() else {}
        return cls(
            pd.read_parquet(d / "rows.parquet"),
            pd.read_parquet(d / "arms.parquet"),
            rounds,
            str(meta.get("generator", generator)),
            benefits=pd.read_parquet(bpath) if bpath.exists() else pd.DataFrame(),
            asked=str(meta.get("asked", "")),
        )

    def arms_frame(self, spark: SparkSession) -> DataFrame:
        return spark.createDataFrame(self.arms)


def ordered_table(table: dict[str, Counter[str]]) -> dict[str, dict[str, int]]:
    """Columns by rows rejected (most first, then name), reasons in validation order."""
    order = {r: i for i, r in enumerate(REASONS)}
    out: dict[str, dict[str, int]] = {}
    for col in sorted(table, key=lambda c: (-sum(table[c].values()), c)):
        reasons = {r: int(n) for r, n in table[col].items() if n}
        if reasons:
            out[col] = dict(sorted(reasons.items(), key=lambda kv: order.get(kv[0], len(order))))
    return out


def reject_table(
    by_column: dict[str, dict[str, int]], clipped: dict[str, int] | None = None
) -> list[str]:
    """The per-column reject table as aligned text lines (empty when nothing was rejected or
    clipped): one line per column, one count per reason, then the clipped values."""
    clipped = clipped or {}
    cols = list(ordered_table({c: Counter(r) for c, r in by_column.items()}))
    cols += sorted(c for c in clipped if c not in by_column)
    if not cols:
        return []
    reasons = [r for r in REASONS if any(r in by_column.get(c, {}) for c in cols)]
    heads = [*reasons, "clipped"] if clipped else reasons
    width = max(len("column"), *(len(c) for c in cols))
    lines = ["column".ljust(width) + "".join(f"  {h:>13}" for h in heads)]
    for c in cols:
        counts = [by_column.get(c, {}).get(r, 0) for r in reasons]
        if clipped:
            counts.append(clipped.get(c, 0))
        lines.append(c.ljust(width) + "".join(f"  {n if n else '-':>13}" for n in counts))
    return lines


def arms_table(rows: pd.DataFrame, target: str) -> pd.DataFrame:
    """One row per group: what selection and the report read."""
    cols = [
        "arm_id",
        "dgr_id",
        "round",
        "rule",
        "n_rows",
        "gain",
        "agree",
        "candidate",
        "predicted",
        "labels",
        "generator",
    ]
    if rows.empty:
        return pd.DataFrame(columns=cols)
    out = []
    for arm, g in rows.groupby(ARM, sort=True):
        first = g.iloc[0]
        labels = {str(k): int(v) for k, v in g[target].value_counts().items()}
        out.append(
            {
                "arm_id": arm,
                "dgr_id": first[DGR_COL],
                "round": int(first[ROUND]),
                "rule": first[RULE],
                "n_rows": len(g),
                "gain": float(first[GAIN_COL]) if pd.notna(first[GAIN_COL]) else float("nan"),
                "agree": bool(first[AGREE_COL]),
                "candidate": bool(first[CANDIDATE_COL]),
                "predicted": first[PRED_COL],
                "labels": json.dumps(labels, sort_keys=True),
                "generator": first[GENERATOR],
            }
        )
    return pd.DataFrame(out, columns=cols)


def count_arms(scored: pd.DataFrame, stats: RoundStats) -> None:
    """A round's groups, label-rejected rows and candidate arms, into its stats."""
    arms = scored.groupby(ARM).agg(cand=(CANDIDATE_COL, "first"), n=(ARM, "size"))
    stats.groups = len(arms)
    stats.label_rejected = int(scored[ARM].str.endswith(".rejected").sum())
    stats.candidate_arms = int(arms["cand"].sum())
    stats.rows_in_candidates = int(arms.loc[arms["cand"], "n"].sum())


def add_gateway_stats(stats: RoundStats, gstats: Any, *, rows: bool = True) -> None:
    """Add one gateway stage's stats (`llm.gateway.GatewayStats`) to the round. Rejects of a row
    stage go to the row tables; those of a refinement stage (its replies carry rules, not rows)
    to `refined_dropped` as `reply_<reason>`."""
    for k, v in gstats.as_metrics(prefix="").items():
        if k.startswith(("rejected_", "clipped.")):
            continue
        if "latency" in k or k == "budget_exhausted":
            stats.llm[k] = max(stats.llm.get(k, 0.0), float(v))
        else:
            stats.llm[k] = stats.llm.get(k, 0.0) + float(v)
    if rows:
        for k, n in gstats.rejected.items():
            stats.rejected[k] = stats.rejected.get(k, 0) + int(n)
        for col, reasons in gstats.rejected_by_column.items():
            mine = stats.rejected_by_column.setdefault(col, {})
            for k, n in reasons.items():
                mine[k] = mine.get(k, 0) + int(n)
        for col, n in gstats.clipped.items():
            stats.clipped[col] = stats.clipped.get(col, 0) + int(n)
    else:
        for k, n in gstats.rejected.items():
            key = f"reply_{k}"
            stats.refined_dropped[key] = stats.refined_dropped.get(key, 0) + int(n)
