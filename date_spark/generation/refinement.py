"""Step 4 of Algorithm 2, rule refinement: the reflective prompts that ask the LLM for better rules,
and the checks a proposed rule must pass before its rows are asked for.

The rounds that send these prompts through the gateway stay in `generator.py` (the algorithm reads
in one place); what a prompt holds and why a proposal is dropped live here.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from date_spark.columns import ARM, RULE
from date_spark.config import GenerationConfig
from date_spark.errors import RuleError
from date_spark.generation.fields import DGR_COL, GAIN_COL, PRED_COL
from date_spark.generation.prompts import HistoryItem, Masker, Message, refinement_messages
from date_spark.generation.result import RoundStats
from date_spark.llm.rows import RowColumn, RowSchema
from date_spark.rules import CategorySet, Rule, parse_rule
from date_spark.schema import Kind, TableSchema

__all__ = [
    "check_proposal",
    "history_items",
    "in_domain",
    "read_proposals",
    "refinement_requests",
]


def history_items(
    mine: pd.DataFrame,
    kinds: Mapping[str, Kind],
    masker: Masker,
    columns: Sequence[str],
    limit: int,
) -> list[HistoryItem]:
    """One partition's scored groups of a round, best and worst first (at most `limit`, 0 = all),
    for the refinement prompt and the next round's row prompt. Rejected rows (label check) have
    no gain and are left out."""
    history = []
    for _, g in mine.groupby(ARM, sort=True):
        first = g.iloc[0]
        if pd.isna(first[GAIN_COL]):
            continue
        history.append(
            HistoryItem(
                rule=masker.rule(parse_rule(first[RULE], kinds)),
                predicted=first[PRED_COL],
                gain=float(first[GAIN_COL]),
                rows=masker.frame(g[list(columns)]),
            )
        )
    history = sorted(history, key=lambda h: -h.gain)
    if limit and len(history) > limit:
        history = history[: (limit + 1) // 2] + history[len(history) - limit // 2 :]
    return history


def refinement_requests(
    scored: pd.DataFrame,
    all_rows: pd.DataFrame,
    dgrs: Mapping[str, Any],
    rnd: int,
    *,
    schema: TableSchema,
    head: str,
    columns: Sequence[str],
    masker: Masker,
    gcfg: GenerationConfig,
    budget: int,
) -> tuple[list[tuple[str, list[Message], RowSchema]], list[str]]:
    """One reflective request per DGR scored this round, and its DGR id. The replies are rows of
    a one-column schema (`rule`), so they are validated like any other answer."""
    rule_schema = RowSchema(
        columns=(RowColumn("rule", Kind.CATEGORICAL),),
        n_rows=gcfg.refined_rules_per_rule,
    )
    items, dgr_ids = [], []
    for dgr_id, d in dgrs.items():
        mine = scored[scored[DGR_COL] == dgr_id]
        if mine.empty:
            continue
        history = history_items(mine, schema.kinds, masker, columns, gcfg.history_items)
        counts = None
        if schema.task == "classification":
            labels = all_rows[all_rows[DGR_COL] == dgr_id][schema.target]
            counts = {str(k): int(v) for k, v in labels.value_counts().items()}
        messages = refinement_messages(
            head=head,
            columns=columns,
            dgr=masker.rule(d.rule),
            history=history,
            class_counts=counts,
            n_rules=gcfg.refined_rules_per_rule,
            budget=budget,
            max_value_chars=gcfg.max_value_chars,
        )
        items.append((f"{dgr_id}|r{rnd}|refine", messages, rule_schema))
        dgr_ids.append(dgr_id)
    return items, dgr_ids


def read_proposals(
    records: Iterable[Mapping[Any, Any]],
    dgrs: Mapping[str, Any],
    stats: RoundStats,
    dropped: Counter[str],
    *,
    kinds: Mapping[str, Kind],
    masker: Masker,
    sensitive: Collection[str],
    free_text: Collection[str],
    domains: Mapping[str, Sequence[Any]],
) -> list[tuple[str, Rule]]:
    """The usable (DGR id, rule) proposals of the replies, first occurrence first; each proposal
    counts in `stats.proposed_rules`, each dropped one in `dropped` by reason."""
    proposals: list[tuple[str, Rule]] = []
    for rec in records:
        dgr_id = rec[DGR_COL]
        parent = dgrs[dgr_id].rule
        for r in json.loads(rec["rows"]) if rec["rows"] else []:
            stats.proposed_rules += 1
            combined, why = check_proposal(
                str(r.get("rule", "")), parent, kinds,
                masker=masker, sensitive=sensitive, free_text=free_text, domains=domains,
            )  # fmt: skip
            if combined is None:
                dropped[why] += 1
            else:
                proposals.append((dgr_id, combined))
    return list(dict.fromkeys(proposals))


def check_proposal(
    text: str,
    parent: Rule,
    kinds: Mapping[str, Kind],
    *,
    masker: Masker,
    sensitive: Collection[str],
    free_text: Collection[str],
    domains: Mapping[str, Sequence[Any]],
) -> tuple[Rule | None, str]:
    """A proposed rule intersected with its DGR, or None and the reason it is dropped."""
    try:
        rule = masker.unmask_rule(parse_rule(text, kinds))
    except RuleError:
        return None, "unparseable"
    if rule.columns() & set(sensitive):
        return None, "sensitive_column"
    if rule.columns() & set(free_text):
        return None, "free_text_column"
    if not in_domain(rule, kinds, domains):
        return None, "out_of_domain"
    combined = parent.and_(rule).simplify()
    if not combined.conjunctions:
        return None, "contradicts_partition"
    if combined == parent.simplify():
        return None, "no_change"
    return combined, ""


def in_domain(rule: Rule, kinds: Mapping[str, Kind], domains: Mapping[str, Sequence[Any]]) -> bool:
    """Whether every category the rule names was seen in its column's training rows."""
    for conj in rule.conjunctions:
        for col, view in conj.bounds(kinds).items():
            dom = domains.get(col)
            if not isinstance(view, CategorySet) or view.allowed is None or dom is None:
                continue
            if not set(view.allowed) <= set(dom):
                return False
    return True
