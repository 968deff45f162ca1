"""How many prompt tokens it takes to show the question's own partition with 8 real rows.

    .venv/bin/python benchmarks/prompt_budget.py

For each table: the row prompt of one question (the header with every column, the own block with
`own_rows` rows, the question) is built with the library's own prompt code and measured with the
gateway's token estimate (3 characters per token, deliberately high). Printed: the smallest budget
that keeps 8 own rows, and what the default `generation.prompt_token_budget` then still shows (own
rows, other blocks) for a question with 10 context blocks of 8 rows. Baseline in the same run: the
demo table. Writes benchmarks/results/<name>.json (`--name`, default prompt_budget) with the
commit, machine and parameters (`benchmarks/recording.py`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from recording import environment, write_result

from date_spark.config import Config
from date_spark.generation.prompts import ExampleBlock, generation_messages, header
from date_spark.llm.engine import estimate_tokens
from date_spark.rules import parse_rule
from date_spark.schema import ColumnSpec, Kind, TableSchema

OWN = 8


def wide(n_cols: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    data: dict[str, Any] = {}
    for i in range(n_cols - 1):
        kind = i % 4
        if kind == 0:
            data[f"num_{i}"] = np.round(rng.lognormal(3, 1, 200), 2)
        elif kind == 1:
            data[f"cat_{i}"] = rng.choice([f"level_{j}" for j in range(12)], 200)
        elif kind == 2:
            data[f"int_{i}"] = rng.integers(0, 1000, 200)
        else:
            data[f"flag_{i}"] = rng.random(200) < 0.3
    data["y"] = rng.integers(0, 2, 200)
    return pd.DataFrame(data)


def schema_of(pdf: pd.DataFrame, target: str) -> TableSchema:
    cols = []
    for c in pdf.columns:
        s = pdf[c]
        if pd.api.types.is_bool_dtype(s):
            cols.append(ColumnSpec(c, Kind.BOOLEAN, "boolean"))
        elif pd.api.types.is_numeric_dtype(s):
            integral = pd.api.types.is_integer_dtype(s)
            cols.append(ColumnSpec(c, Kind.NUMERIC, "bigint" if integral else "double",
                                   integral=integral))  # fmt: skip
        elif pd.api.types.is_datetime64_any_dtype(s) or c == "account_opened":
            cols.append(ColumnSpec(c, Kind.DATE, "date"))
        else:
            cols.append(ColumnSpec(c, Kind.CATEGORICAL, "string"))
    return TableSchema(tuple(cols), target, "classification", (0, 1))


def measure(
    name: str, pdf: pd.DataFrame, target: str, rule_text: str, other_col: str
) -> dict[str, Any]:
    cfg = Config().generation
    schema = schema_of(pdf, target)
    cols = list(pdf.columns)
    domains = {
        c.name: sorted(pdf[c.name].dropna().unique().tolist(), key=str)
        for c in schema.columns
        if c.kind in (Kind.CATEGORICAL, Kind.BOOLEAN) and pdf[c.name].nunique() <= 50
    }
    ranges = {
        c.name: (pdf[c.name].min(), pdf[c.name].max())
        for c in schema.columns
        if c.kind is Kind.NUMERIC
    }
    head = header(schema, cols, domains, ranges)
    rule = parse_rule(rule_text)
    own = ExampleBlock(rule, 500, 0.1, pdf.head(OWN))
    others = [
        ExampleBlock(parse_rule(f"{other_col} >= {i}"), 400, 0.1, pdf.iloc[8 * i : 8 * i + 8])
        for i in range(1, 11)
    ]

    def prompt(budget: int, blocks: list[ExampleBlock]) -> str:
        msgs = generation_messages(
            head=head, columns=cols, blocks=blocks, target=rule, n_rows=cfg.rows_per_request,
            budget=budget, own=own, min_own_rows=OWN,
        )  # fmt: skip
        return str(msgs[-1]["content"])

    alone = generation_messages(
        head=head, columns=cols, blocks=[], target=rule, n_rows=cfg.rows_per_request,
        budget=10**9, own=own,
    )  # fmt: skip
    need = estimate_tokens(alone)
    at_default = prompt(cfg.prompt_token_budget, others)
    own_rows = at_default.split("\n\n")[1].count("\n{")
    return {
        "table": name,
        "columns": len(cols),
        "budget_for_8_own_rows": need,
        "tokens_per_row": round(
            (
                need
                - estimate_tokens(
                    generation_messages(
                        head=head,
                        columns=cols,
                        blocks=[],
                        target=rule,
                        n_rows=10,
                        budget=10**9,
                        own=ExampleBlock(rule, 1, 0.0, pdf.head(0)),
                    )
                )
            )
            / OWN,
            1,
        ),
        "default_budget": cfg.prompt_token_budget,
        "own_rows_at_default": own_rows,
        "other_blocks_at_default": at_default.count("\nExample "),
        "fits_8_at_default": need <= cfg.prompt_token_budget,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", default="prompt_budget", help="results file: results/<name>.json")
    args = ap.parse_args()
    from date_spark.testing.planted import demo_credit, planted_regimes

    env = environment()

    demo = demo_credit()
    demo["account_opened"] = demo["account_opened"].astype(str)
    rows = [
        measure("demo_credit", demo, "default", "age < 30 and homeowner = false", "income"),
        measure(
            "planted",
            planted_regimes(200, n_features=8, seed=1).drop(columns="regime"),
            "y",
            "x0 < 0.3",
            "x1",
        ),
        measure("wide_20", wide(20), "y", "num_0 < 20", "int_2"),
        measure("wide_50", wide(50), "y", "num_0 < 20", "int_2"),
        measure("wide_100", wide(100), "y", "num_0 < 20", "int_2"),
    ]
    base = rows[0]["budget_for_8_own_rows"]
    print(f"{'table':12s} {'cols':>5s} {'tokens/row':>10s} {'budget for 8 own rows':>22s} "
          f"{'x demo':>7s} {'own rows @default':>18s} {'other blocks @default':>22s}")  # fmt: skip
    for r in rows:
        print(
            f"{r['table']:12s} {r['columns']:5d} {r['tokens_per_row']:10.1f} "
            f"{r['budget_for_8_own_rows']:22d} {r['budget_for_8_own_rows'] / base:7.2f} "
            f"{r['own_rows_at_default']:18d} {r['other_blocks_at_default']:22d}"
        )
    write_result(
        args.name,
        {
            "own_rows": OWN,
            "default_budget": Config().generation.prompt_token_budget,
            "rows_per_request": Config().generation.rows_per_request,
            "context_blocks": 10,
            "tables": [r["table"] for r in rows],
            "tokens": "estimate_tokens (3 characters per token)",
        },
        {"tables": rows},
        env,
    )


if __name__ == "__main__":
    main()
