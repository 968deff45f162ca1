# Databricks notebook source
# MAGIC %md
# MAGIC # date-spark quickstart: augment a table
# MAGIC
# MAGIC Adds synthetic rows to a table: date-spark finds rules (parts of the data one model fits
# MAGIC well), asks an LLM for rows that obey each rule, and keeps the groups of rows that improve
# MAGIC validation error. The output is the input's columns plus provenance columns (`_date_*`),
# MAGIC partitioned by `run_date`; a rerun of the same date replaces that date only.
# MAGIC
# MAGIC 1. Attach a cluster (Spark 3.5 or later; serverless and shared clusters work too).
# MAGIC 2. Fill in the widgets above: tables are catalog names (`main.risk.credit`) or paths
# MAGIC    (`/Volumes/main/risk/raw/credit.parquet`); the endpoint is any OpenAI-compatible base
# MAGIC    URL, e.g. `https://<workspace-host>/serving-endpoints` with a serving endpoint as model.
# MAGIC 3. **The API key** lives in a secret scope. This notebook reads it with
# MAGIC    `dbutils.secrets.get` into the driver's environment variable that `llm.api_key_env`
# MAGIC    names (`OPENAI_API_KEY` unless you override it). The LLM calls run on the executors,
# MAGIC    which read their own environment: on a classic cluster also set the cluster environment
# MAGIC    variable `OPENAI_API_KEY={{secrets/<scope>/<key>}}` (Advanced options, Spark,
# MAGIC    Environment variables). The check cell below says so when it is missing. The key is
# MAGIC    never printed, logged or written.
# MAGIC 4. Run all. Nothing is written until the input passed every check.

# COMMAND ----------

# MAGIC %md
# MAGIC Install the package (skip when the cluster has it as a library). From a wheel built
# MAGIC with `make dist` and uploaded to a volume:
# MAGIC `%pip install /Volumes/<catalog>/<schema>/<volume>/date_spark-<version>-py3-none-any.whl`.

# COMMAND ----------

# MAGIC %pip install date-spark

# COMMAND ----------

# ruff: noqa: E402, F821  (imports per cell; dbutils, display, displayHTML, spark: notebook globals)
dbutils.widgets.text("input_table", "main.default.credit_applications", "Input table or path")
dbutils.widgets.text("target", "default", "Target column")
dbutils.widgets.text(
    "output_table", "main.default.credit_applications_augmented", "Output table or path"
)
dbutils.widgets.dropdown("mode", "augmented", ["augmented", "synthetic"], "Output rows")
dbutils.widgets.text("endpoint", "https://<workspace-host>/serving-endpoints", "LLM base URL")
dbutils.widgets.text("model", "databricks-meta-llama-3-3-70b-instruct", "Model")
dbutils.widgets.text("secret_scope", "date-spark", "Secret scope (empty: no key)")
dbutils.widgets.text("secret_key", "llm-api-key", "Secret key")
dbutils.widgets.text("run_date", "", "Run date (empty: today)")
dbutils.widgets.text("runs_dir", "/Volumes/main/default/date_spark/runs", "Runs directory")
dbutils.widgets.text("overrides", "", "More settings: section.key=value; ...")

# COMMAND ----------

import os
import re

from date_spark.config import dump_yaml, load_config


def location(value: str, section: str) -> list[str]:
    """A catalog table name, or a path when it holds a slash (/Volumes/..., s3://..., dbfs:/...)."""
    value = value.strip()
    return [f"{section}.path={value}"] if "/" in value else [f"{section}.table={value}"]


w = dbutils.widgets.get
runs_dir = w("runs_dir").strip().rstrip("/")
settings = [
    *location(w("input_table"), "input"),
    f"input.target={w('target').strip()}",
    *location(w("output_table"), "output"),
    f"output.mode={w('mode')}",
    f"output.runs_dir={runs_dir}",
    "llm.provider=openai",
    f"llm.base_url={w('endpoint').strip()}",
    f"llm.model={w('model').strip()}",
    f"llm.cache_path={runs_dir}/llm_cache",
    "spark.master=null",  # use this cluster's session
]
if w("run_date").strip():
    settings.append(f"output.run_date={w('run_date').strip()}")
if not w("secret_scope").strip():
    settings.append("llm.api_key_env=null")  # an endpoint without auth
settings += [s.strip() for s in re.split(r"[;\n]", w("overrides")) if s.strip()]
config = load_config([], settings)
print(dump_yaml(config))  # the resolved config; it names the key's variable, never holds the key

# COMMAND ----------

# The API key: from the secret scope into the variable llm.api_key_env names (driver side).
key_env = config.llm.api_key_env
scope, secret_name = w("secret_scope").strip(), w("secret_key").strip()
if key_env:
    os.environ[key_env] = dbutils.secrets.get(scope=scope, key=secret_name)
    print(f"API key: secret {scope}/{secret_name} -> ${key_env} on the driver")

    # The executors make the calls: check that they have the variable too (only whether it is set).
    def _key_is_set(batches, name=key_env):
        import os

        import pandas as pd

        for _ in batches:
            yield pd.DataFrame({"ok": [bool(os.environ.get(name))]})

    executors_ok = spark.range(2, numPartitions=2).mapInPandas(_key_is_set, "ok boolean").toPandas()
    if not executors_ok["ok"].all():
        raise RuntimeError(
            f"the executors have no ${key_env}: add the cluster environment variable "
            f"{key_env}={{{{secrets/{scope}/{secret_name}}}}} and restart the cluster"
        )
    print(f"API key: ${key_env} is set on the executors")

# COMMAND ----------

# MAGIC %md
# MAGIC ## Run
# MAGIC Reads and checks the input, discovers rules, generates rows through the endpoint, selects
# MAGIC arms and writes the output. Every stage is saved under the runs directory: a run that
# MAGIC stopped can continue with `DateSynthesizer(config).run(resume=run_id)`.

# COMMAND ----------

import pandas as pd

from date_spark.synthesizer import DateSynthesizer

result = DateSynthesizer(config).run()
s = result.summary
summary = pd.DataFrame(
    [
        ("run", result.run_id),
        ("input", s["profile"]),
        ("rules (DGRs)", s["rules"]),
        ("arms generated / candidates / selected",
         f"{s['arms']} / {s['candidate_arms']} / {s['selected_arms']}"),
        ("synthetic rows kept", s["synthetic_rows"]),
        ("rows written", result.output["rows"]),
        ("written to", result.output["location"]),
        ("LLM budget ran out", s["budget_exhausted"]),
        ("MLflow run", result.mlflow_run_id or "-"),
        ("seconds per stage", ", ".join(f"{k} {v:.0f}" for k, v in s["seconds"].items())),
    ],
    columns=["", "value"],
).astype(str)
display(summary)

# COMMAND ----------

# MAGIC %md
# MAGIC ## The rows this run wrote
# MAGIC One row per synthetic record with the rule it obeys (`_date_rule`), its arm and round.

# COMMAND ----------

from pyspark.sql import functions as F

if config.output.table:
    written = spark.table(config.output.table)
else:
    written = spark.read.parquet(config.output.path)
this_run = written.where(F.col("_date_run_id") == result.run_id)
synthetic = this_run.where(F.col("_date_synthetic"))
by_rule = this_run.groupBy("_date_synthetic", "_date_rule").count()
display(by_rule.orderBy("_date_synthetic", "_date_rule"))
display(synthetic.limit(100))

# COMMAND ----------

# MAGIC %md
# MAGIC ## Report: are the synthetic rows like the real ones?
# MAGIC The run evaluated what it kept: column shapes and pair trends (fidelity), distance to the
# MAGIC closest real row (privacy), whether every row obeys its rule (validity), and test error
# MAGIC without partitions, with partitions, and with the DATE rows (utility). The report is saved
# MAGIC with the run (and logged to MLflow when tracking is on).

# COMMAND ----------

from pathlib import Path

report = result.output.get("report")
if report:
    print(f"report: {report}")
    displayHTML(Path(report).read_text())
else:  # nothing was kept: the run says why
    print((Path(result.run_dir) / "evaluation" / "evaluation_summary.md").read_text())
