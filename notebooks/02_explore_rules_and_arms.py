# Databricks notebook source
# MAGIC %md
# MAGIC # date-spark: explore rules and arms
# MAGIC
# MAGIC Runs the three steps in memory, without writing an output table, so you can look at each:
# MAGIC
# MAGIC * **Rules (DGRs)**: the parts of the table one model fits within the error threshold `rho`;
# MAGIC   each is a condition such as `age >= 40 and region in ('east', 'north')`.
# MAGIC * **Arms**: groups of generated rows (one rule, one round, one tree path); `gain` is
# MAGIC   the drop in cross-fitted loss measured when they were generated; `candidate`: it was
# MAGIC   positive.
# MAGIC * **Selection**: which arms were kept, step by step, and the rows they contribute.
# MAGIC
# MAGIC Change `discovery.rho` (or any other setting) in the `overrides` widget and run again to
# MAGIC see how the rules move. Widgets and the API key work as in `01_quickstart`.

# COMMAND ----------

# MAGIC %pip install date-spark

# COMMAND ----------

# ruff: noqa: E402, F821  (imports per cell; dbutils, display, spark: notebook globals)
dbutils.widgets.text("input_table", "main.default.credit_applications", "Input table or path")
dbutils.widgets.text("target", "default", "Target column")
dbutils.widgets.text("endpoint", "https://<workspace-host>/serving-endpoints", "LLM base URL")
dbutils.widgets.text("model", "databricks-meta-llama-3-3-70b-instruct", "Model")
dbutils.widgets.text("secret_scope", "date-spark", "Secret scope (empty: no key)")
dbutils.widgets.text("secret_key", "llm-api-key", "Secret key")
dbutils.widgets.text("runs_dir", "/Volumes/main/default/date_spark/runs", "Runs directory")
dbutils.widgets.text("overrides", "discovery.rho=0.2", "More settings: section.key=value; ...")

# COMMAND ----------

import os
import re

from date_spark.config import load_config

w = dbutils.widgets.get
source = w("input_table").strip()
runs_dir = w("runs_dir").strip().rstrip("/")
settings = [
    f"input.path={source}" if "/" in source else f"input.table={source}",
    f"input.target={w('target').strip()}",
    "llm.provider=openai",
    f"llm.base_url={w('endpoint').strip()}",
    f"llm.model={w('model').strip()}",
    f"llm.cache_path={runs_dir}/llm_cache",  # the same cache as the quickstart: reruns are free
    "spark.master=null",
]
if not w("secret_scope").strip():
    settings.append("llm.api_key_env=null")
settings += [s.strip() for s in re.split(r"[;\n]", w("overrides")) if s.strip()]
config = load_config([], settings)
if config.llm.api_key_env:
    os.environ[config.llm.api_key_env] = dbutils.secrets.get(
        scope=w("secret_scope").strip(), key=w("secret_key").strip()
    )
print(f"rho={config.discovery.rho} ({config.discovery.rho_mode}), "
      f"{config.generation.iterations} generation round(s), selection: {config.selection.strategy}")

# COMMAND ----------

from date_spark.synthesizer import DateSynthesizer

synth = DateSynthesizer(config).prepare()
print(synth.profile_.summary())
synth.fit()  # discovery -> generation -> selection, in memory

# COMMAND ----------

# MAGIC %md
# MAGIC ## Rules
# MAGIC `support` is the number of rows a rule covers where it was found, `val_error` its model's
# MAGIC validation error (error rate, or MSE for regression).

# COMMAND ----------

from date_spark.rules import count_rules

rules = synth.rules_
print(f"{len(rules.dgrs)} rules cover {rules.coverage:.1%} of the training rows")
display(rules.rules_frame(spark).orderBy("rule_id"))
# Rows of the whole input each rule matches, counted in one pass over the table
print(count_rules(synth.data_, rules.rules()))

# COMMAND ----------

# MAGIC %md
# MAGIC ## Arms
# MAGIC One row per group of generated rows. `agree` says whether the rows' labels agree with the
# MAGIC tree fitted on the real rows of the rule; `selected` whether the selection kept the arm.

# COMMAND ----------

arms = synth.arms_.copy()
arms["selected"] = arms["arm_id"].isin(synth.selection_.selected)
arm_columns = ["arm_id", "dgr_id", "round", "rule", "n_rows", "gain", "agree", "candidate"]
display(arms[[*arm_columns, "selected"]].sort_values(["dgr_id", "gain"], ascending=[True, False]))
# Every rule and thin segment, with zeros where generation did not prompt it (only the
# `generation.max_rules` with the most expected benefit are prompted)
segments = [str(d.rule_id) for d in synth.rules_.dgrs] + [str(t.rule_id) for t in synth.rules_.thin]
per_rule = (
    arms.groupby("dgr_id")
    .agg(
        arms=("arm_id", "size"),
        rows=("n_rows", "sum"),
        candidates=("candidate", "sum"),
        selected=("selected", "sum"),
        best_gain=("gain", "max"),
    )
    .reindex(segments)
    .fillna({"arms": 0, "rows": 0, "candidates": 0, "selected": 0})
    .rename_axis("dgr_id")
)
display(per_rule.reset_index())

# COMMAND ----------

# MAGIC %md
# MAGIC ## Selection
# MAGIC The trace has one row per evaluation: the arm tried, its quality and diversity, the change
# MAGIC of the validation score and whether it was kept.

# COMMAND ----------

sel = synth.selection_
print(f"strategy {sel.strategy}: kept {len(sel.selected)} arms, {sel.n_rows} rows; "
      f"score {sel.baseline:.4f} -> {sel.best_score:.4f}; stop: {sel.stop_reason}")
display(sel.trace_frame())

# COMMAND ----------

# MAGIC %md
# MAGIC ## The kept rows
# MAGIC In the input's schema with provenance; every row satisfies the rule in `_date_rule`.

# COMMAND ----------

from pyspark.sql import functions as F

from date_spark.rules import parse_rule

kept = synth.sample()
display(kept)
kinds = synth.schema_.kinds
for rule_text in [r["_date_rule"] for r in kept.select("_date_rule").distinct().collect()]:
    rule = parse_rule(rule_text, kinds)
    outside = kept.where((F.col("_date_rule") == rule_text) & ~rule.to_column()).count()
    assert outside == 0, f"{outside} kept rows break their rule {rule_text}"
print("every kept row satisfies its rule")
