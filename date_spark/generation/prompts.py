"""Prompts for Algorithm 2: the initial DGR prompt and the reflective refinement prompt.

Every prompt is built to fit `generation.prompt_token_budget`: the parts that can shrink (example
rows, example blocks, history entries) are dropped from the least useful end until the estimate
fits, so prompts stay bounded however long the history grows. Token counts are estimated with the
gateway's deliberately high estimate (3 characters per token), so the real count is lower. The
budget is a hard limit: when even the smallest prompt (header and question, no rows) is over it,
`PromptBudgetError` says by how much, before any request is sent.

Cell values are data, never instructions: each one reaches a prompt as a JSON string (examples,
history rows, the domains in the header) or as a quoted literal of a rule, and is cut to
`generation.max_value_chars` characters with a marker saying how much was left out, so one long
cell cannot take over a prompt. Columns holding longer values or line breaks never appear in
rules (see `io.read.free_text_columns`).

What the model receives besides these messages: the reply's JSON schema (`llm/rows.py`,
`RowSchema.json_schema`: each column's type and range, and the rule after `RULE_MARKER`), sent as
`response_format`, or, to an endpoint that refuses that, appended as one more user message
(`llm/engine.py`, `params`). The text a model reads is these messages plus that schema.

Categorical masking (`generation.mask_categoricals`): each categorical value is replaced by a
stable token (`<column-initial><6 hex>` from a hash of the seed, column and value) in examples,
rules and the schema, and mapped back on the generated rows; the LLM never sees the raw values.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from date_spark.errors import PromptBudgetError
from date_spark.llm.engine import estimate_tokens
from date_spark.rules import Conjunction, Predicate, Rule
from date_spark.schema import Kind, TableSchema

__all__ = [
    "MAX_VALUE_CHARS",
    "SYSTEM",
    "ExampleBlock",
    "HistoryItem",
    "Masker",
    "Message",
    "cut",
    "generation_messages",
    "header",
    "refinement_messages",
]


Message = dict[str, str]

SYSTEM = (
    "You generate realistic rows for a data table. You follow the given rules exactly and answer "
    "only with JSON."
)
MAX_VALUE_CHARS = 200  # generation.max_value_chars' default


def cut(v: Any, max_chars: int = MAX_VALUE_CHARS) -> Any:
    """A string value cut to `max_chars` characters, with a marker of what was left out."""
    if isinstance(v, str) and len(v) > max_chars:
        return f"{v[:max_chars]}...[{len(v) - max_chars} more characters]"
    return v


# ----------------------------------------------------------------------------------------------
# Categorical masking
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Masker:
    """A bijection between categorical values and opaque tokens, per column."""

    forward: Mapping[str, Mapping[Any, str]] = field(default_factory=dict)

    @staticmethod
    def build(domains: Mapping[str, Sequence[Any]], seed: int) -> Masker:
        fwd: dict[str, dict[Any, str]] = {}
        for col, values in domains.items():
            tokens: dict[Any, str] = {}
            for v in values:
                h = hashlib.sha256(f"{seed}|{col}|{v}".encode()).hexdigest()[:6]
                tokens[v] = f"{(col[:1] or 'v').lower()}{h}"
            fwd[col] = tokens
        return Masker(fwd)

    @property
    def active(self) -> bool:
        return bool(self.forward)

    def backward(self, column: str) -> dict[str, Any]:
        return {t: v for v, t in self.forward.get(column, {}).items()}

    def value(self, column: str, v: Any) -> Any:
        return self.forward.get(column, {}).get(v, v)

    def frame(self, pdf: pd.DataFrame) -> pd.DataFrame:
        out = pdf.copy()
        for col, mapping in self.forward.items():
            if col in out.columns:
                out[col] = out[col].map(lambda v, m=mapping: m.get(v, v))
        return out

    def unmask_frame(self, pdf: pd.DataFrame) -> pd.DataFrame:
        out = pdf.copy()
        for col in self.forward:
            if col in out.columns:
                back = self.backward(col)
                out[col] = out[col].map(lambda v, b=back: b.get(v, v))
        return out

    def rule(self, rule: Rule) -> Rule:
        if not self.active:
            return rule
        conjs = []
        for c in rule.conjunctions:
            preds = []
            for p in c.predicates:
                if p.column in self.forward and p.value is not None:
                    v = p.value
                    nv: Any = (
                        tuple(self.value(p.column, x) for x in v)
                        if isinstance(v, tuple)
                        else self.value(p.column, v)
                    )
                    preds.append(Predicate(p.column, p.op, nv))
                else:
                    preds.append(p)
            conjs.append(Conjunction(tuple(preds)))
        return Rule(tuple(conjs))

    def unmask_rule(self, rule: Rule) -> Rule:
        inverse = Masker({c: self.backward(c) for c in self.forward})
        return inverse.rule(rule)


# ----------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExampleBlock:
    """One in-context example: a DGR, its scores and a few real training rows."""

    rule: Rule
    support: int
    val_error: float
    rows: pd.DataFrame


@dataclass(frozen=True)
class HistoryItem:
    """One generated group from an earlier round, for the reflective prompt."""

    rule: Rule  # DGR condition AND the tree path
    predicted: Any  # the tree's prediction on that path
    gain: float
    rows: pd.DataFrame


def _describe_column(
    name: str,
    kind: Kind,
    integral: bool,
    domain: Sequence[Any] | None,
    rng: tuple[Any, Any] | None,
    max_chars: int = MAX_VALUE_CHARS,
) -> str:
    if domain is not None and kind in (Kind.CATEGORICAL, Kind.BOOLEAN):
        shown = ", ".join(json.dumps(cut(v, max_chars), default=str) for v in list(domain)[:30])
        more = " ..." if len(domain) > 30 else ""
        return f"- {name}: one of [{shown}{more}]"
    if kind is Kind.NUMERIC:
        what = "integer" if integral else "number"
    else:
        what = {
            "boolean": "true or false",
            "categorical": "text",
            "date": "date YYYY-MM-DD",
            "timestamp": "timestamp YYYY-MM-DD HH:MM:SS",
        }[kind.value]
    if rng is not None and rng[0] is not None:
        return f"- {name}: {what}, from {_short(rng[0])} to {_short(rng[1])}"
    return f"- {name}: {what}"


def header(
    schema: TableSchema,
    columns: Sequence[str],
    domains: Mapping[str, Sequence[Any]],
    ranges: Mapping[str, tuple[Any, Any]],
    max_value_chars: int = MAX_VALUE_CHARS,
) -> str:
    lines = [
        "Task: generate new rows for a table, for training a model that predicts "
        f"'{schema.target}' ({schema.task}).",
        "Columns (the label is last):",
    ]
    ordered = [c for c in columns if c != schema.target] + [schema.target]
    for name in ordered:
        spec = schema.column(name)
        lines.append(
            _describe_column(
                name,
                spec.kind,
                spec.integral,
                domains.get(name),
                ranges.get(name),
                max_value_chars,
            )
        )
    return "\n".join(lines)


def _short(v: Any) -> Any:
    """Floats to a few significant digits: a 17-digit float costs tokens and teaches nothing."""
    if isinstance(v, float) and math.isfinite(v):
        return round(v, 2) if abs(v) >= 1 else float(f"{v:.3g}")
    return v


def _rows_json(pdf: pd.DataFrame, columns: Sequence[str], max_chars: int) -> str:
    recs = pdf[list(columns)].to_dict(orient="records")
    return "\n".join(
        json.dumps({k: cut(_short(v), max_chars) for k, v in r.items()}, default=str) for r in recs
    )


def _block_text(
    i: int, b: ExampleBlock, columns: Sequence[str], n_rows: int, max_chars: int
) -> str:
    body = _rows_json(b.rows.head(n_rows), columns, max_chars) if n_rows else ""
    score = (
        f"validation error of its model: {b.val_error:.3f}"
        if math.isfinite(b.val_error)
        else "a thin segment, served by the table-wide model"
    )
    text = f"Example {i}: rule: {b.rule.to_text()}\nsupport: {b.support} rows, {score}"
    return text + ("\nrows:\n" + body if body else "")


def _fit(build: Any, budget: int, shrink_steps: Sequence[Any], what: str) -> list[Message]:
    """Call `build(step)` with ever smaller settings until the messages fit the budget; refuse
    when even the smallest does not."""
    messages: list[Message] = build(shrink_steps[0])
    for step in shrink_steps[1:]:
        if estimate_tokens(messages) <= budget:
            break
        messages = build(step)
    need = estimate_tokens(messages)
    if need > budget:
        raise PromptBudgetError(
            f"the smallest {what} (column list and question, no example rows) needs about {need} "
            f"tokens, over generation.prompt_token_budget={budget}; raise the budget to at "
            f"least {need}, or leave columns out with input.exclude"
        )
    return messages


def _feedback_text(
    items: Sequence[HistoryItem], columns: Sequence[str], rows: int, max_chars: int
) -> str:
    """Last round's groups of this partition: path, predicted label, loss change, a few rows."""
    lines = [
        "Feedback from the previous round (groups of generated rows, the decision-tree path they "
        "fell in, the label the tree predicts there, and how adding them changed the model's "
        "loss; positive = helped). Generate more like the groups that helped, fewer like those "
        "that hurt:"
    ]
    for i, h in enumerate(items, 1):
        t = (
            f"{i}. path: {h.rule.to_text()}; predicted label: {h.predicted}; "
            f"loss change when added: {h.gain:+.4f}"
        )
        if rows:
            t += "\n" + _rows_json(h.rows.head(rows), columns, max_chars)
        lines.append(t)
    return "\n".join(lines)


def generation_messages(
    *,
    head: str,
    columns: Sequence[str],
    blocks: Sequence[ExampleBlock],
    target: Rule,
    n_rows: int,
    budget: int,
    own: ExampleBlock | None = None,
    feedback: Sequence[HistoryItem] = (),
    min_own_rows: int = 8,
    max_value_chars: int = MAX_VALUE_CHARS,
) -> list[Message]:
    """The row prompt for one question: header, the question's own partition first (its rule,
    scores and real rows), the previous round's tree-path feedback for it, other partitions as
    context, then the question. To fit the budget, what shrinks first is what helps least: other
    blocks' rows, other blocks, feedback rows and items, and only then the own block's rows, down
    to `min_own_rows` and, if even that does not fit, further (the budget is a limit)."""
    question = (
        f"Question: generate {n_rows} new, varied rows that obey ALL of this rule:\n"
        f"  {target.to_text()}\n"
        "Use the same columns, types and formats as the examples. Answer only with JSON: "
        '{"rows": [{...}, ...]}.'
    )
    others = [b for b in blocks if own is None or b.rule != own.rule]
    own_n = len(own.rows) if own is not None else 0
    floor = min(own_n, min_own_rows)
    max_rows = max((len(b.rows) for b in others), default=0)
    # (own rows, other blocks, their rows, feedback items, feedback rows), largest first
    steps: list[tuple[int, int, int, int, int]] = []
    fb = len(feedback)
    steps += [(own_n, len(others), r, fb, 2) for r in range(max_rows, 0, -1)]
    steps += [(own_n, k, 1, fb, 2) for k in range(len(others), -1, -1)]
    steps += [(own_n, 0, 0, fb, r) for r in (1, 0)]
    steps += [(own_n, 0, 0, k, 0) for k in range(fb - 1, -1, -1)]
    steps += [(r, 0, 0, 0, 0) for r in range(own_n - 1, floor - 1, -1)]
    steps += [(r, 0, 0, 0, 0) for r in range(floor - 1, -1, -1)]
    steps = steps or [(own_n, 0, 0, 0, 0)]

    def build(step: tuple[int, int, int, int, int]) -> list[Message]:
        r_own, k, r, f_items, f_rows = step
        parts = [head]
        if own is not None:
            text = _block_text(1, own, columns, r_own, max_value_chars)
            parts.append(text.replace("Example 1:", "This partition:", 1))
        if f_items:
            parts.append(_feedback_text(feedback[:f_items], columns, f_rows, max_value_chars))
        parts += [
            _block_text(i + 2, b, columns, r, max_value_chars) for i, b in enumerate(others[:k])
        ]
        parts.append(question)
        return [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "\n\n".join(parts)},
        ]

    return _fit(build, budget, steps, f"prompt for rule {target.to_text()[:80]!r}")


def refinement_messages(
    *,
    head: str,
    columns: Sequence[str],
    dgr: Rule,
    history: Sequence[HistoryItem],
    class_counts: Mapping[str, int] | None,
    n_rules: int,
    budget: int,
    rows_per_item: int = 3,
    max_value_chars: int = MAX_VALUE_CHARS,
) -> list[Message]:
    """The reflective prompt of rounds 2..I: show which generated groups helped and which hurt,
    and ask for better rules inside the DGR, in the rule grammar. `class_counts` is None for a
    regression target (a count per distinct value would be one line per row: measured 4,060
    tokens on a 1,250-row table)."""
    ranked = sorted(history, key=lambda h: h.gain, reverse=True)
    if class_counts is None:
        balance = "cover the target's whole range"
    else:
        counts = ", ".join(f"{k}: {v}" for k, v in sorted(class_counts.items()))
        balance = f"balance the classes (generated so far: {counts or 'none'})"
    ask = (
        f"Propose {n_rules} improved rules for generating more useful rows inside the partition "
        f"'{dgr.to_text()}'. Learn from the rules that raised the validation score, avoid the ones "
        f"that lowered it, and {balance}. Write "
        "each rule in the same syntax, e.g. age >= 40 and region in ('north', 'east'), using only "
        'the columns above. Answer only with JSON: {"rows": [{"rule": "..."}, ...]}.'
    )

    def item_text(h: HistoryItem, r: int) -> str:
        t = (
            f"rule: {h.rule.to_text()}\npredicted label on this path: {h.predicted}\n"
            f"validation change when added: {h.gain:+.4f}"
        )
        rows = _rows_json(h.rows.head(r), columns, max_value_chars) if r else ""
        return t + ("\nrows:\n" + rows if rows else "")

    def pick(k: int) -> list[HistoryItem]:
        # the k/2 best and the k/2 worst, best first
        if k >= len(ranked):
            return ranked
        top = ranked[: (k + 1) // 2]
        bottom = ranked[len(ranked) - k // 2 :] if k // 2 else []
        return top + [h for h in bottom if h not in top]

    steps = [(len(ranked), r) for r in range(rows_per_item, -1, -1)]
    steps += [(k, 0) for k in range(len(ranked) - 1, -1, -1)]

    def build(step: tuple[int, int]) -> list[Message]:
        k, r = step
        items = pick(k)
        hist = "\n\n".join(f"History {i + 1}:\n{item_text(h, r)}" for i, h in enumerate(items))
        parts = [head, f"Partition rule: {dgr.to_text()}"]
        if hist:
            parts.append(hist)
        parts.append(ask)
        return [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": "\n\n".join(parts)},
        ]

    return _fit(build, budget, steps or [(0, 0)], f"refinement prompt for {dgr.to_text()[:80]!r}")
