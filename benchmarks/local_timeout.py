"""How long one generation request takes on the embedded local model: the basis of `llm.timeout_s`.

    .venv/bin/python benchmarks/local_timeout.py [--repeats 2]

Starts the embedded llama.cpp server exactly as a run does (`LocalModelServer`, SmolLM2-135M, the
default `llm.local` settings) and sends it generation prompts for the demo table the way the
gateway does (OpenAI client, `json_object` + schema), one request at a time, under two settings:

  demo        conf/demo.yaml (`make run`)
  defaults    conf/base.yaml: the largest request the defaults send to the local model (the
              prompt cut to `llm.local.n_ctx - llm.max_tokens`, see generation.prompt_budget)

Every request starts with a fresh nonce, so llama.cpp cannot reuse an earlier prompt's KV cache
(a run's first request cannot either). Per setting:

  baseline    max_tokens = 1: the prompt alone (server overhead + prompt processing)
  as sent     the request a run sends; the reply ends where the model or the grammar ends it
  full length the same prompt without the grammar and with `min_tokens = max_tokens`: the reply
              runs to the limit, the slowest a request of that size can be

It prints a table with each scenario's seconds against its setting's baseline measured in the same
run, the load average (the machine is shared: a loaded box is slower), and the timeout that covers
the slowest request three times over (rounded up to 30 s). Results go to
benchmarks/results/<name>.json (`--name`, default local_timeout).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from recording import environment, write_result  # noqa: E402

from date_spark.config import Config, load_config  # noqa: E402
from date_spark.generation import prompt_budget  # noqa: E402
from date_spark.generation.prompts import ExampleBlock, generation_messages, header  # noqa: E402
from date_spark.llm.local import LocalModelServer  # noqa: E402
from date_spark.llm.rows import RowSchema  # noqa: E402
from date_spark.rules import parse_rule  # noqa: E402
from date_spark.schema import ColumnSpec, Kind, TableSchema  # noqa: E402
from date_spark.testing.planted import demo_credit  # noqa: E402

HEADROOM = 3.0  # the recommended timeout covers the slowest request this many times
ROUND_TO_S = 30


RULES = [
    "age < 30",
    "age >= 30 and region = 'south'",
    "age >= 30 and region = 'north'",
    "age >= 30 and region = 'east'",
    "age >= 30 and region = 'west' and income < 40000.0",
    "age >= 30 and region = 'west' and income >= 40000.0",
    "utilization >= 0.7",
    "num_accounts >= 6",
    "homeowner = true and age >= 60",
    "homeowner = false and age < 40",
]


def demo_request(cfg: Config) -> tuple[list[dict[str, Any]], RowSchema]:
    """A generation prompt and row schema for the demo table under `cfg`, built as generation.py
    builds them (own partition first, other blocks, the prompt budget for the local model)."""
    g = cfg.generation
    pdf = demo_credit(4000)
    pdf["account_opened"] = pd.to_datetime(pdf["account_opened"]).dt.date
    kinds = {"bool": Kind.BOOLEAN, "object": Kind.CATEGORICAL, "int64": Kind.NUMERIC}
    kinds["float64"] = Kind.NUMERIC
    specs = []
    for c in pdf.columns:
        dtype = str(pdf[c].dtype)
        kind = Kind.DATE if c == "account_opened" else kinds[dtype]
        specs.append(ColumnSpec(c, kind, dtype, True, dtype == "int64"))
    names = [s.name for s in specs]
    classes = tuple(sorted(pdf["default"].unique().tolist()))
    table = TableSchema(tuple(specs), "default", "classification", classes)
    domains = {
        s.name: sorted(pdf[s.name].dropna().unique().tolist())
        for s in specs
        if s.kind in (Kind.CATEGORICAL, Kind.BOOLEAN)
    }
    ranges = {s.name: (min(pdf[s.name].dropna()), max(pdf[s.name].dropna())) for s in specs}
    ranges = {k: v for k, v in ranges.items() if table.column(k).kind.ordered}
    blocks = []
    for r in RULES[: g.example_blocks]:
        rule = parse_rule(r, table.kinds)
        blocks.append(ExampleBlock(rule, 500, 0.1, pdf[rule.mask(pdf)].head(g.example_rows)))
    head = header(table, names, domains, ranges)
    target = parse_rule(RULES[1], table.kinds)
    own = ExampleBlock(target, 500, 0.1, pdf[target.mask(pdf)].head(g.own_rows))
    messages = generation_messages(
        head=head,
        columns=names,
        blocks=blocks,
        target=target,
        n_rows=g.rows_per_request,
        budget=prompt_budget(cfg),
        own=own,
        min_own_rows=g.own_rows,
    )
    schema = RowSchema.from_table(
        table, target, domains=domains, ranges=ranges, n_rows=g.rows_per_request
    )
    return messages, schema


def one(client: Any, model: str, messages: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    nonce = [{"role": "system", "content": f"Request {uuid.uuid4().hex}."}]
    t0 = time.monotonic()
    comp = client.chat.completions.create(model=model, messages=nonce + messages, **kw)
    secs = time.monotonic() - t0
    usage = comp.usage
    return {
        "seconds": secs,
        "prompt_tokens": usage.prompt_tokens if usage else None,
        "completion_tokens": usage.completion_tokens if usage else None,
        "finish_reason": comp.choices[0].finish_reason if comp.choices else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--name", default="local_timeout", help="results file: results/<name>.json")
    args = ap.parse_args()
    env = environment()

    import openai

    cfg = Config()
    demo = load_config([ROOT / "conf" / "demo.yaml"])
    settings = {}
    for name, c in (("demo", demo), ("defaults", cfg)):
        messages, schema = demo_request(c)
        settings[name] = (messages, schema, c.llm.max_tokens)
    load_before = os.getloadavg()
    rows: list[dict[str, Any]] = []
    with LocalModelServer(cfg.llm.local) as url:
        client = openai.OpenAI(
            api_key="sk-no-key-required", base_url=url, timeout=3600, max_retries=0
        )
        model = cfg.llm.local.model_alias
        for name, (messages, schema, mt) in settings.items():
            fmt = schema.request_kwargs("json_object")
            scenarios: list[tuple[str, int, dict[str, Any]]] = [
                ("baseline", 1, {}),
                ("as sent", mt, {"temperature": 0.7, **fmt}),
                ("full length", mt, {"temperature": 0.7, "extra_body": {"min_tokens": mt}}),
            ]
            for scen, max_tokens, kw in scenarios:
                for i in range(args.repeats):
                    r = one(client, model, messages, max_tokens=max_tokens, seed=i, **kw)
                    rows.append({"setting": name, "scenario": scen, "max_tokens": max_tokens, **r})
                    print(f"{name} {scen} #{i}: {r}", flush=True)
    load_after = os.getloadavg()

    slowest = max(r["seconds"] for r in rows)
    recommended = ROUND_TO_S * math.ceil(HEADROOM * slowest / ROUND_TO_S)
    print()
    print(f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f} (2 cores)")
    print(
        "| setting  | scenario    | max_tokens | prompt tok | completion tok | seconds (max) "
        "| vs baseline |"
    )
    print("|---|---|---|---|---|---|---|")
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["setting"], r["scenario"], r["max_tokens"]), []).append(r)
    summary = []
    for (name, scen, mt), rs in groups.items():
        base_rows = groups[(name, "baseline", 1)]
        base = sum(r["seconds"] for r in base_rows) / len(base_rows)
        secs = max(r["seconds"] for r in rs)
        comp = max(r["completion_tokens"] or 0 for r in rs)
        prompt = max(r["prompt_tokens"] or 0 for r in rs)
        summary.append(
            {
                "setting": name,
                "scenario": scen,
                "max_tokens": mt,
                "prompt_tokens": prompt,
                "completion_tokens": comp,
                "seconds_max": round(secs, 2),
                "vs_baseline": round(secs / base, 2),
            }
        )
        print(
            f"| {name:<8} | {scen:<11} | {mt:>10} | {prompt:>10} | {comp:>14} | {secs:>13.1f} "
            f"| {secs / base:>10.1f}x |"
        )
    print()
    print(
        f"slowest request {slowest:.1f} s; a timeout covering it {HEADROOM:g}x: "
        f"{recommended} s (llm.timeout_s default: {cfg.llm.timeout_s:g} s)"
    )
    write_result(
        args.name,
        {"repeats": args.repeats, "headroom": HEADROOM, "configured_timeout_s": cfg.llm.timeout_s},
        {
            "load_average": [round(load_before[0], 2), round(load_after[0], 2)],
            "slowest_s": round(slowest, 2),
            "headroom": HEADROOM,
            "recommended_timeout_s": recommended,
            "configured_timeout_s": cfg.llm.timeout_s,
            "summary": summary,
            "requests": rows,
        },
        env,
    )


if __name__ == "__main__":
    main()
