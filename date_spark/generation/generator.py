"""Algorithm 2: DGR-guided generation with decision-tree path reasoning and rule refinement.

Before round 1, where to generate: each partition's learning curve (the selection model's
cross-fitted loss with half vs all of its training rows, one grouped pandas UDF) gives its
expected benefit from more rows; the `max_rules` partitions with the most are prompted, with the
request budget spread in proportion (`partition_benefit`, `allocate_requests`). Thin segments that
discovery left below its support floor compete too (their rows are scored in the rest partition,
served by the global model).

Per round (one Spark stage of LLM calls, one of scoring):
1. Questions: round 1 asks for rows under each prompted DGR; rounds 2..I ask under the rules the
   LLM itself proposed in the reflective prompt (each intersected with its parent DGR, so its rows
   are scored in the partition they belong to; a DGR with no usable proposal is asked again as it
   is). A row prompt shows the question's own partition first (its rule and `own_rows` real
   rows), then last round's tree-path feedback for it, then other partitions as context.
2. The requests DataFrame goes through the LLM gateway (`llm.gateway.run`): rows come back
   validated against the question's rule, the data's domains (ordered ranges widened by
   `generation.domain_margin`) and the label's values. Rejected rows are counted per reason and
   per column (`RoundStats.rejected`, `.rejected_by_column`), so a run shows which column kills
   rows.
3. Decision-tree reasoning, per partition in a cogrouped pandas UDF: a label check (a teacher
   model) sets apart rows whose label it contradicts with high confidence; a tree fitted on the
   partition's training rows routes the generated rows; rows are grouped by (question,
   root-to-leaf path, generated label agrees with the tree), paths with fewer than
   `min_arm_rows` rows pooled. Each group's gain is the drop of the partition's mean
   cross-fitted loss (`models.crossfit_losses`: the selection model, every training row scored
   once) when the group is added: the same measure selection screens with, on the same rows, so
   the prior the bandit starts from predicts what it then measures. Groups with gain > 0 are
   candidate arms; the rest stay in the arms table, marked, so the refinement prompt can learn
   from them. The validation split is the confirmation's: never read here.
4. Refinement (rounds < I): per DGR a reflective prompt shows its best and worst groups (rule,
   path, predicted label, gain, a few rows) and current class counts, and asks for better rules in
   the rule grammar. Proposals are parsed against the schema and dropped, counted by reason, when
   they name unknown columns or out-of-domain values, contradict the DGR, or match no training row.
   (The rules come back through the gateway as rows of a one-column schema, so they are validated
   like any other answer; the rows for them are asked for in the next round's question.)

Test rows never enter prompts, training or scoring: the input's `_date_split = 'test'` rows are
dropped on entry. Sensitive columns (`generation.sensitive_columns`) are never sent to the LLM; a
generated row gets a value drawn at random from its partition's training rows for each of them.

`generation.generator: interpolation` replaces the LLM with rule-bounded SMOTE-style interpolation
inside each partition (pairs of same-label training rows; numeric and date values interpolated,
categorical and boolean values taken from either parent; rows outside the DGR dropped), and goes
through the same tree scoring, so its arms are comparable.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from date_spark.columns import PARENTS, ROUND, named_col, pandas_safe, restore_names
from date_spark.config import Config, label_check_for
from date_spark.errors import ConfigError
from date_spark.generation.fields import (
    ARM_FIELDS,
    DGR_COL,
    FIXED_COL,
    GROUP_COL,
    META_FIELDS,
    ORDER_COL,
    QRULE_COL,
    REQUEST_COL,
    REST,
    DiscoveryLike,
)
from date_spark.generation.interpolation import interpolate, with_parents
from date_spark.generation.prompts import (
    ExampleBlock,
    HistoryItem,
    Masker,
    generation_messages,
    header,
)
from date_spark.generation.refinement import history_items, read_proposals, refinement_requests
from date_spark.generation.reroute import reroute
from date_spark.generation.result import (
    GenerationResult,
    RoundStats,
    add_gateway_stats,
    arms_table,
    count_arms,
    reject_table,
)
from date_spark.generation.sampling import (
    Question,
    ThinSegment,
    free_text_in,
    partition_sample,
    prompt_budget,
    stratified_examples,
    typed_domains,
    typed_frame,
)
from date_spark.generation.scoring import (
    BENEFIT_DDL,
    ScoringSpec,
    allocate_requests,
    partition_benefit,
    rank_partitions,
    score_groups,
    scoring_frame,
    volume_requests,
)
from date_spark.io.read import decimal_limits
from date_spark.io.split import SPLIT_COL, TEST, TRAIN
from date_spark.llm import gateway
from date_spark.llm.budget import Budget
from date_spark.llm.rows import RowSchema
from date_spark.modeling.models import ModelSpec
from date_spark.rules import Rule, count_rules
from date_spark.runtime.placement import (
    apply_cogrouped,
    apply_grouped,
    driver_workers,
    frame_cells,
    on_driver,
    through_arrow,
)
from date_spark.runtime.spark import to_pandas
from date_spark.schema import Kind, TableSchema

__all__ = ["Generator", "generate"]

log = logging.getLogger(__name__)


class Generator:
    """Runs Algorithm 2 for one job. Holds the partition sample (cached, small) between rounds."""

    def __init__(
        self,
        data: DataFrame,
        discovery: DiscoveryLike,
        schema: TableSchema,
        cfg: Config,
        *,
        route: Any,
        base_url: str | None = None,
        budget: Budget | None = None,
    ) -> None:
        self.cfg = cfg
        self.gcfg = cfg.generation
        self.schema = schema
        self.discovery = discovery
        self.base_url = base_url
        self.budget = budget if budget is not None else Budget.from_config(cfg.llm)
        self.spark = data.sparkSession
        sensitive = tuple(self.gcfg.sensitive_columns)
        unknown = [c for c in sensitive if c not in schema.names]
        if unknown:
            raise ConfigError(
                f"generation.sensitive_columns names {unknown[0]!r}, not an input column"
            )
        if schema.target in sensitive:
            raise ConfigError("the target cannot be a sensitive column; remove it from the list")
        self.sensitive = sensitive
        self.prompt_budget = prompt_budget(cfg)
        thin = [
            ThinSegment(t.rule_id, t.rule, int(t.support)) for t in getattr(discovery, "thin", [])
        ]
        self.thin_ids = {t.rule_id for t in thin}
        self.all_dgrs: list[Any] = sorted(
            [*discovery.dgrs, *thin], key=lambda d: (-d.support, str(d.rule_id))
        )
        self.dgrs = self.all_dgrs[: self.gcfg.max_rules]  # re-ranked by benefit in prepare()
        self.requests = {str(d.rule_id): self.gcfg.requests_per_rule for d in self.dgrs}
        for d in self.all_dgrs:
            leaked = d.rule.columns() & set(sensitive)
            if leaked:
                raise ConfigError(
                    f"rule {d.rule_id} uses sensitive column {sorted(leaked)[0]!r}; exclude "
                    f"sensitive columns from discovery so their values never reach a prompt"
                )
        self.by_id = {str(d.rule_id): d for d in self.dgrs}
        self.benefits = pd.DataFrame()
        non_test = data.where(F.col(SPLIT_COL) != TEST)
        # rows no DGR covers form the rest partition (the global model's)
        self.routed = non_test.transform(route).withColumn(
            DGR_COL, F.coalesce(F.col(DGR_COL), F.lit(REST))
        )
        self.columns = tuple(schema.names)
        self.input_fields = [data.schema[c] for c in self.columns]
        self.decimals = decimal_limits(self.input_fields)  # a value past them: out_of_domain

    # -- preparation ----------------------------------------------------------------------------
    def prepare(self) -> None:
        # Every DGR is sampled (selection scores and reports all partitions); the top
        # `max_rules` by expected benefit are prompted.
        ids = [str(d.rule_id) for d in self.all_dgrs if str(d.rule_id) not in self.thin_ids]
        sample = partition_sample(
            self.routed, [*ids, REST], self.gcfg.partition_sample_rows, self.cfg.seed
        )
        self.sample_sdf = sample.select(*[named_col(c) for c in self.columns], DGR_COL, SPLIT_COL)
        # capped per DGR: small by construction; in a fixed row order, whatever the partitioning
        keyed = self.sample_sdf.withColumn(
            ORDER_COL, F.xxhash64(*[named_col(c) for c in self.sample_sdf.columns])
        )
        self.sample_pd = (
            to_pandas(keyed)
            .sort_values(ORDER_COL, kind="mergesort")
            .drop(columns=ORDER_COL)
            .reset_index(drop=True)
        )
        # Re-create the sample from driver memory so later stages do not re-sample the table.
        self.sample_sdf = self.spark.createDataFrame(self.sample_pd, schema=self.sample_sdf.schema)
        train = self.sample_pd[self.sample_pd[SPLIT_COL] == TRAIN]
        self.domains, self.ranges = typed_domains(
            self.spark.createDataFrame(train, schema=self.sample_sdf.schema), self.schema
        )
        # Free text is no category list: enumerating it would put every long value into each
        # prompt and request schema, and the LLM could never reproduce one exactly.
        self.free_text = free_text_in(self.sample_pd, self.schema, self.gcfg.max_value_chars)
        self.domains = {c: v for c, v in self.domains.items() if c not in self.free_text}
        self.examples = stratified_examples(
            self._with_thin(self.sample_pd),
            self.schema.target,
            max(self.gcfg.example_rows, self.gcfg.own_rows),
            self.cfg.seed,
        )
        self.score_sdf = self._scoring_sample()
        masked_cols = {
            c: v
            for c, v in self.domains.items()
            if self.schema.column(c).kind is Kind.CATEGORICAL and c != self.schema.target
        }
        self.masker = (
            Masker.build(masked_cols, self.cfg.seed) if self.gcfg.mask_categoricals else Masker()
        )
        self.prompt_columns = [c for c in self.columns if c not in self.sensitive]
        shown_domains = {
            c: [self.masker.value(c, v) for v in vals] for c, vals in self.domains.items()
        }
        self.head = header(
            self.schema,
            self.prompt_columns,
            shown_domains,
            self.ranges,
            self.gcfg.max_value_chars,
        )
        self.spec = ScoringSpec(
            encoder=self.discovery.encoder,
            target=self.schema.target,
            task=self.schema.task,
            columns=self.columns,
            sensitive=self.sensitive,
            tree_max_depth=self.gcfg.tree_max_depth,
            min_arm_rows=self.gcfg.min_arm_rows,
            label_check=label_check_for(self.gcfg.label_check, self.cfg.selection.rule),
            label_check_confidence=self.gcfg.label_check_confidence,
            model=ModelSpec.for_table(
                self.cfg.selection, self.schema, self.discovery.encoder, seed=self.cfg.seed
            ),
            folds=self.cfg.selection.folds,
            seed=self.cfg.seed,
            generator=self.gcfg.generator,
            masker=self.masker,
        )
        self._rank_by_benefit()

    def _with_thin(self, sample: pd.DataFrame) -> pd.DataFrame:
        """The sample plus, for each thin segment, its rows of the rest tagged with its id."""
        rest = sample[sample[DGR_COL] == REST]
        parts = [sample]
        for d in self.all_dgrs:
            if str(d.rule_id) in self.thin_ids and len(rest):
                mine = rest[d.rule.mask(rest).to_numpy(dtype=bool)]
                parts.append(mine.assign(**{DGR_COL: str(d.rule_id)}))
        return pd.concat(parts, ignore_index=True) if len(parts) > 1 else sample

    def _scoring_sample(self) -> DataFrame:
        """The rows the scoring UDF cogroups with (`scoring_frame`), as Spark hands them over."""
        cap = max(self.gcfg.partition_sample_rows, 20_000)
        pdf = scoring_frame(self.sample_pd, cap, self.cfg.seed)
        schema = T.StructType(
            [
                *self.sample_sdf.schema.fields,
                T.StructField(GROUP_COL, T.StringType()),
                T.StructField(FIXED_COL, T.BooleanType()),
            ]
        )
        self.score_pd = through_arrow(pdf, schema, self._tz())  # as the scoring UDF sees it
        return self.spark.createDataFrame(pdf, schema=schema)

    def _tz(self) -> str:
        return str(self.spark.conf.get("spark.sql.session.timeZone") or "UTC")

    def _rank_by_benefit(self) -> None:
        """Learning curve per partition, in one grouped pandas UDF across the cluster; the
        `max_rules` DGRs with the largest expected benefit are prompted, with requests in
        proportion to it (`partition_benefit`, `allocate_requests`)."""
        spec = self.spec
        per_rule = self.gcfg.requests_per_rule
        added = self.gcfg.rows_per_request * per_rule * self.gcfg.iterations

        src, back = pandas_safe(self.sample_sdf)  # dotted or backticked names: aliased

        def fn(pdf: pd.DataFrame) -> pd.DataFrame:
            return partition_benefit(restore_names(pdf, back), spec, added)

        if on_driver(*frame_cells(self.sample_pd)):  # `placement`: same frame either way
            frame = apply_grouped(self.sample_pd, DGR_COL, fn, BENEFIT_DDL, self._tz())
        else:
            frame = to_pandas(src.groupBy(DGR_COL).applyInPandas(fn, schema=BENEFIT_DDL))
        by_id = {str(d.rule_id): d for d in self.all_dgrs}
        support = {k: d.support for k, d in by_id.items()}
        frame, top = rank_partitions(frame, support, self.thin_ids, added, self.gcfg.max_rules)
        self.dgrs = [by_id[k] for k in top]
        self.by_id = {k: by_id[k] for k in top}
        benefit = frame.set_index(DGR_COL)["benefit"].to_dict()
        self.requests = allocate_requests({k: benefit.get(k, 0.0) for k in top}, per_rule)
        if self.gcfg.rows_per_real_row > 0:
            self.requests = self._volume_requests(top, frame)
        frame["prompted"] = frame[DGR_COL].isin(top)
        frame["requests"] = frame[DGR_COL].map(self.requests).fillna(0).astype(int)
        self.benefits = frame
        log.info(
            "generation: %d of %d partitions (DGRs, thin segments) prompted, by benefit: %s",
            sum(1 for k in top if self.requests.get(k, 0) > 0),  # a capped job may ask some none
            len(by_id),
            ", ".join(
                f"{r[DGR_COL]} ({r['train_rows']} rows, slope {r['slope']:.2f}, "
                f"{r['requests']} requests)"
                for r in frame[frame["prompted"]].to_dict("records")
            ),
        )

    def _volume_requests(self, top: Sequence[str], frame: pd.DataFrame) -> dict[str, int]:
        """Requests in proportion to each prompted partition's real (non-test) rows."""
        nontest = self.sample_pd[DGR_COL].value_counts()
        train = frame.set_index(DGR_COL)["train_rows"]
        real = {k: int(nontest.get(k, train.get(k, 1))) for k in top}
        g = self.gcfg
        requests, _, why = volume_requests(
            real, per_real_row=g.rows_per_real_row, rows_per_request=g.rows_per_request,
            iterations=g.iterations, max_per_partition=g.max_rows_per_partition,
            max_total=g.max_generated_rows,
        )  # fmt: skip
        log.info("generation: %s", why)
        self.volume_note = why
        return requests

    def _block(self, dgr_id: str, rows: int) -> ExampleBlock | None:
        d = self.by_id.get(dgr_id)
        examples = self.examples.get(dgr_id)
        if d is None or examples is None:
            return None
        return ExampleBlock(
            self.masker.rule(d.rule),
            int(d.support),
            float(d.val_error),
            self.masker.frame(examples[self.prompt_columns].head(rows)),
        )

    def _blocks(self) -> list[ExampleBlock]:
        """Context blocks: the first `example_blocks` prompted DGRs (by expected benefit)."""
        out = []
        for d in self.dgrs[: self.gcfg.example_blocks]:
            block = self._block(str(d.rule_id), self.gcfg.example_rows)
            if block is not None:
                out.append(block)
        return out

    def _row_schema(self, rule: Rule) -> RowSchema:
        shown_domains = {
            c: [self.masker.value(c, v) for v in vals] for c, vals in self.domains.items()
        }
        return RowSchema.from_table(
            self.schema,
            self.masker.rule(rule),
            domains=shown_domains,
            ranges=self.ranges,
            n_rows=self.gcfg.rows_per_request,
            columns=self.prompt_columns,
            margin=self.gcfg.domain_margin,
            out_of_range=self.gcfg.out_of_range,
            decimals=self.decimals,
        )

    # -- one round ------------------------------------------------------------------------------
    def _llm_rows(self, questions: Sequence[Question], rnd: int, stats: RoundStats) -> pd.DataFrame:
        blocks = self._blocks()
        items, extra_dgr, extra_round, extra_q, seeds = [], [], [], [], []
        for q in questions:
            messages = generation_messages(
                head=self.head,
                columns=self.prompt_columns,
                blocks=blocks,
                target=self.masker.rule(q.rule),
                n_rows=self.gcfg.rows_per_request,
                budget=self.prompt_budget,
                own=self._block(q.dgr_id, self.gcfg.own_rows),
                feedback=self.feedback.get(q.dgr_id, []),
                min_own_rows=self.gcfg.own_rows,
                max_value_chars=self.gcfg.max_value_chars,
            )
            schema = self._row_schema(q.rule)
            for rep in range(self.requests.get(q.dgr_id, self.gcfg.requests_per_rule)):
                rid = f"{q.dgr_id}|r{rnd}|q{q.index}|s{rep}"
                items.append((rid, messages, schema))
                extra_dgr.append(q.dgr_id)
                extra_round.append(str(rnd))
                extra_q.append(q.rule.dumps())
                seeds.append((self.cfg.llm.seed or 0) + 1000 * rnd + 10 * q.index + rep)
                self.prompts.append(messages[-1]["content"])
            self._check_own_rows(messages[-1]["content"])
        stats.requests = len(items)
        if not items:
            return pd.DataFrame()
        req = gateway.requests_frame(
            self.spark,
            items,
            seed=seeds,
            temperature=[self.gcfg.temperature] * len(items),
            **{DGR_COL: extra_dgr, "_date_round_s": extra_round, QRULE_COL: extra_q},
        )
        out = gateway.run(
            req,
            self.cfg.llm,
            base_url=self.base_url,
            budget=self.budget,
            keep_columns=[DGR_COL, "_date_round_s", QRULE_COL],
        )
        self._absorb(out.stats, stats)
        pdf = out.pandas
        rows: list[dict[str, Any]] = []
        off: list[dict[str, Any]] = []
        names = set(self.prompt_columns)
        for rec in pdf.to_dict("records"):
            for key, into in (("rows", rows), ("off_rule", off)):
                if key == "off_rule" and not self.gcfg.reroute:
                    continue  # counted as violates_rule by the gateway, and dropped
                for r in json.loads(rec[key]) if rec[key] else []:
                    if set(r) - names:
                        continue
                    r = dict(r)
                    r[DGR_COL] = rec[DGR_COL]
                    r[ROUND] = rnd
                    r[REQUEST_COL] = rec["request_id"]
                    r[QRULE_COL] = rec[QRULE_COL]
                    into.append(r)
        valid = typed_frame(pd.DataFrame(rows, dtype=object), self.schema)
        if not off:
            return valid
        off_frame = typed_frame(pd.DataFrame(off, dtype=object), self.schema)
        # as the rule set routes real rows: discovery's DGRs in order, then the thin segments
        order = [d for d in self.discovery.dgrs if str(d.rule_id) not in self.thin_ids]
        order += [d for d in self.all_dgrs if str(d.rule_id) in self.thin_ids]
        moved = reroute(off_frame, rnd, stats, order, self.masker)
        return pd.concat([valid, moved], ignore_index=True) if len(valid) else moved

    def _check_own_rows(self, prompt: str) -> None:
        """Warn once when the budget leaves fewer own-partition rows than `own_rows`."""
        if getattr(self, "_own_rows_warned", False) or not self.gcfg.own_rows:
            return
        own = next((p for p in prompt.split("\n\n") if p.startswith("This partition:")), "")
        shown = sum(1 for line in own.splitlines() if line.startswith("{"))
        if shown < min(self.gcfg.own_rows, self.gcfg.example_rows or self.gcfg.own_rows):
            self._own_rows_warned = True
            log.warning(
                "generation: a prompt budget of %d tokens shows only %d of %d real rows of the "
                "question's own partition for this table (%d columns); raise "
                "generation.prompt_token_budget (benchmarks/prompt_budget.py measures what it "
                "takes)",
                self.prompt_budget,
                shown,
                self.gcfg.own_rows,
                len(self.prompt_columns),
            )

    def _absorb(self, gstats: Any, stats: RoundStats, *, rows: bool = True) -> None:
        """Add one gateway stage's stats to the round (`add_gateway_stats`); note an exhausted
        budget."""
        add_gateway_stats(stats, gstats, rows=rows)
        if gstats.budget_exhausted:
            self.budget_exhausted = True

    def _interp_rows(self, questions: Sequence[Question], rnd: int) -> pd.DataFrame:
        train = self.sample_pd[self.sample_pd[SPLIT_COL] == TRAIN]
        parts = []
        for q in questions:
            n = self.gcfg.rows_per_request * self.requests.get(q.dgr_id, 1)
            rows = interpolate(
                train[train[DGR_COL] == q.dgr_id][list(self.columns)],
                q.rule,
                self.schema,
                n,
                seed=self.cfg.seed + 1000 * rnd + q.index,
                parents=True,  # labels of `sample_pd`, carried in the request id
            )
            rows = rows.drop(columns=list(self.sensitive))
            rows[DGR_COL] = q.dgr_id
            rows[ROUND] = rnd
            rid = f"{q.dgr_id}|r{rnd}|q{q.index}|interp"
            rows[REQUEST_COL] = [with_parents(rid, p) for p in rows.pop(PARENTS)]
            rows[QRULE_COL] = q.rule.dumps()
            parts.append(rows)
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()

    def _score(self, generated: pd.DataFrame, *, group_gains: bool = True) -> pd.DataFrame:
        """Tree-path scoring per partition, in a cogrouped pandas UDF across the cluster."""
        if generated.empty:
            return pd.DataFrame()
        gen_fields = [f for f in self.input_fields if f.name not in self.sensitive] + META_FIELDS
        gen_schema = T.StructType(gen_fields)
        gen = generated.reindex(columns=[f.name for f in gen_fields])
        gen[GROUP_COL] = gen[DGR_COL].where(~gen[DGR_COL].isin(list(self.thin_ids)), REST)
        gen_schema = T.StructType([*gen_fields, T.StructField(GROUP_COL, T.StringType())])
        out_schema = T.StructType(self.input_fields + META_FIELDS + ARM_FIELDS)
        driver = on_driver(*frame_cells(gen, [self.score_pd]))  # `placement`: same rows either way
        # on the driver, the groups' cross-fits may use its cores; a Spark task keeps to its own
        workers = driver_workers() if driver else 1
        spec = dataclasses.replace(self.spec, group_gains=group_gains, workers=workers)
        cols = [f.name for f in out_schema.fields]

        g_back: dict[str, str] = {}  # Spark path: aliases of dotted or backticked names
        p_back: dict[str, str] = {}

        def fn(g: pd.DataFrame, p: pd.DataFrame) -> pd.DataFrame:
            if g.empty:
                return pd.DataFrame(columns=cols)
            return score_groups(restore_names(g, g_back), restore_names(p, p_back), spec)[cols]

        if driver:
            tz = self._tz()
            gen_pd = through_arrow(gen, gen_schema, tz)  # typed as Spark would hand it over
            return apply_cogrouped(gen_pd, self.score_pd, GROUP_COL, fn, out_schema, tz)
        gen_sdf, back = pandas_safe(self.spark.createDataFrame(gen, schema=gen_schema))
        score_sdf, p_alias = pandas_safe(self.score_sdf)
        g_back.update(back)
        p_back.update(p_alias)
        scored = (
            gen_sdf.groupBy(GROUP_COL)
            .cogroup(score_sdf.groupBy(GROUP_COL))
            .applyInPandas(fn, schema=out_schema)
        )
        return to_pandas(scored)

    # -- refinement -----------------------------------------------------------------------------
    def _history(self, mine: pd.DataFrame) -> list[HistoryItem]:
        """One partition's scored groups of a round, for its prompts (`history_items`)."""
        kinds, columns = self.schema.kinds, self.prompt_columns
        return history_items(mine, kinds, self.masker, columns, self.gcfg.history_items)

    def _refine(
        self, scored: pd.DataFrame, all_rows: pd.DataFrame, rnd: int, stats: RoundStats
    ) -> list[Question]:
        """Step 4: one reflective request per scored DGR through the gateway; the proposed rules
        that pass `check_proposal` and match a training row become the next round's questions."""
        items, dgr_ids = refinement_requests(
            scored, all_rows, self.by_id, rnd,
            schema=self.schema, head=self.head, columns=self.prompt_columns, masker=self.masker,
            gcfg=self.gcfg, budget=self.prompt_budget,
        )  # fmt: skip
        self.prompts.extend(messages[-1]["content"] for _, messages, _ in items)
        if not items:
            return []
        req = gateway.requests_frame(
            self.spark,
            items,
            temperature=[self.gcfg.temperature] * len(items),
            **{DGR_COL: dgr_ids},
        )
        out = gateway.run(
            req, self.cfg.llm, base_url=self.base_url, budget=self.budget, keep_columns=[DGR_COL]
        )
        self._absorb(out.stats, stats, rows=False)
        dropped: Counter[str] = Counter(stats.refined_dropped)
        proposals = read_proposals(
            out.pandas.to_dict("records"), self.by_id, stats, dropped,
            kinds=self.schema.kinds, masker=self.masker, sensitive=self.sensitive,
            free_text=self.free_text, domains=self.domains,
        )  # fmt: skip
        questions: list[Question] = []
        if proposals:
            train = self.sample_sdf.where(F.col(SPLIT_COL) == TRAIN)
            sizes = count_rules(train, [r for _, r in proposals])
            for i, (dgr_id, rule) in enumerate(proposals):
                if sizes[i] == 0:
                    dropped["empty_on_training_rows"] += 1
                    continue
                questions.append(Question(dgr_id, len(questions) + 1, rule))
        stats.refined_dropped = dict(dropped)
        return questions

    # -- the loop -------------------------------------------------------------------------------
    def _next_questions(
        self, scored: pd.DataFrame, all_scored: list[pd.DataFrame], rnd: int, stats: RoundStats
    ) -> list[Question]:
        """The refined rules the LLM proposed; a partition without a usable one is asked again
        under its DGR."""
        next_q: list[Question] = []
        if self.gcfg.generator == "llm" and not scored.empty:
            next_q = self._refine(scored, pd.concat(all_scored, ignore_index=True), rnd, stats)
        covered = {q.dgr_id for q in next_q}
        return next_q + [
            Question(str(d.rule_id), 0, d.rule) for d in self.dgrs if str(d.rule_id) not in covered
        ]

    def run(self) -> GenerationResult:
        self.prompts: list[str] = []
        self.feedback: dict[str, list[HistoryItem]] = {}
        self.budget_exhausted = False
        self.prepare()
        questions = [Question(str(d.rule_id), 0, d.rule) for d in self.dgrs]
        all_scored: list[pd.DataFrame] = []
        rounds: list[RoundStats] = []
        for rnd in range(1, self.gcfg.iterations + 1):
            t0 = time.monotonic()
            stats = RoundStats(round=rnd, questions=len(questions))
            log.info(
                "generation round %d of %d: %s rows for %d rules",
                rnd,
                self.gcfg.iterations,
                "asking the LLM for" if self.gcfg.generator == "llm" else "interpolating",
                len(questions),
            )
            if self.gcfg.generator == "llm":
                generated = self._llm_rows(questions, rnd, stats)
            else:
                generated = self._interp_rows(questions, rnd)
                stats.requests = 0
            stats.valid_rows = len(generated) - stats.rerouted
            last = rnd == self.gcfg.iterations and self.cfg.selection.rule == "gain"
            scored = self._score(generated, group_gains=not last)
            if not scored.empty:
                all_scored.append(scored)
                count_arms(scored, stats)
            stats.refined_rules_used = sum(1 for q in questions if q.index > 0)
            # the tree-path feedback of this round goes into the next round's row prompts
            self.feedback = (
                {str(k): self._history(g) for k, g in scored.groupby(DGR_COL)}
                if not scored.empty
                else {}
            )
            next_q: list[Question] = []
            if rnd < self.gcfg.iterations and not self.budget_exhausted:
                next_q = self._next_questions(scored, all_scored, rnd, stats)
            stats.seconds = round(time.monotonic() - t0, 3)
            rounds.append(stats)
            log.info(
                "generation round %d: %d questions, %d requests, %d valid rows, %d rejected, "
                "%d groups, %d candidate arms, %d refined rules next, %.1fs",
                rnd, stats.questions, stats.requests, stats.valid_rows,
                sum(stats.rejected.values()), stats.groups, stats.candidate_arms,
                sum(1 for q in next_q if q.index > 0), stats.seconds,
            )  # fmt: skip
            for line in reject_table(stats.rejected_by_column, stats.clipped):
                log.info("generation round %d rejects: %s", rnd, line)
            questions = next_q
            if self.budget_exhausted:
                log.warning("LLM budget exhausted after round %d; finishing with what we have", rnd)
                break
        empty = [*self.columns] + [f.name for f in META_FIELDS + ARM_FIELDS]
        # An empty result keeps its columns, so callers can group and select without special cases.
        rows = (
            pd.concat(all_scored, ignore_index=True) if all_scored else pd.DataFrame(columns=empty)
        )
        return GenerationResult(
            rows=rows,
            arms=arms_table(rows, self.schema.target),
            rounds=rounds,
            generator=self.gcfg.generator,
            budget_exhausted=self.budget_exhausted,
            prompts=list(self.prompts),
            benefits=self.benefits,
            asked=getattr(self, "volume_note", ""),
        )


def generate(
    data: DataFrame,
    discovery: DiscoveryLike,
    schema: TableSchema,
    cfg: Config,
    *,
    route: Any,
    base_url: str | None = None,
    budget: Budget | None = None,
) -> GenerationResult:
    """Run Algorithm 2. `data` carries `_date_split` (test rows are dropped here); `route` is the
    DGR router (`Discovery.route(column="_date_dgr")`)."""
    return Generator(
        data, discovery, schema, cfg, route=route, base_url=base_url, budget=budget
    ).run()
