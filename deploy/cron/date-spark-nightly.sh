#!/usr/bin/env bash
# Nightly date-spark run for a plain scheduler (cron, a systemd timer, any "run this command").
#
#   date-spark-nightly.sh [YYYY-MM-DD] [more date-spark arguments, e.g. --set selection.budget_rows=200]
#
# The run date defaults to today (local time). Rerunning a date replaces that date's output
# partition only; with the LLM response cache (llm.cache_path) the rerun sends no new LLM calls.
# Exit code: date-spark's (0 done, 2 bad input or config, 3 LLM endpoint or budget, 1 other),
# 75 when the previous run still holds the lock. Output goes to $DATE_SPARK_LOG_DIR/nightly-DATE.log;
# on failure the last lines also go to stderr (cron mails them when MAILTO is set).
#
# Environment (all optional):
#   DATE_SPARK_HOME      the checkout to run from (default: this script's repository)
#   DATE_SPARK_CONFIG    config file (default: $DATE_SPARK_HOME/conf/nightly.yaml)
#   DATE_SPARK_PYTHON    Python with date-spark installed (default: $DATE_SPARK_HOME/.venv/bin/python)
#   DATE_SPARK_LOG_DIR   logs and the lock file (default: $DATE_SPARK_HOME/logs)
#   DATE_SPARK_ENV_FILE  a file sourced first, e.g. `export LLM_GATEWAY_TOKEN=...` (chmod 600):
#                        the API key's variable (llm.api_key_env) without putting it in crontab
#   DATE_SPARK__SECTION__KEY=value  any config value, as for `date-spark run`
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
home="${DATE_SPARK_HOME:-$(cd "$here/../.." && pwd)}"
config="${DATE_SPARK_CONFIG:-$home/conf/nightly.yaml}"
python="${DATE_SPARK_PYTHON:-$home/.venv/bin/python}"
log_dir="${DATE_SPARK_LOG_DIR:-$home/logs}"

run_date="$(date +%F)"
if [[ $# -gt 0 && "$1" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}$ ]]; then
    run_date="$1"
    shift
fi

if [[ -n "${DATE_SPARK_ENV_FILE:-}" ]]; then
    # shellcheck disable=SC1090
    source "$DATE_SPARK_ENV_FILE"
fi

mkdir -p "$log_dir"
log="$log_dir/nightly-$run_date.log"
exec 9>"$log_dir/.nightly.lock"
if ! flock -n 9; then
    echo "date-spark nightly $run_date: the previous run still holds $log_dir/.nightly.lock" >&2
    exit 75
fi

cd "$home"
echo "=== $(date -Is) date-spark nightly run_date=$run_date config=$config" >>"$log"
set +e
"$python" -m date_spark.cli run --config "$config" --set "output.run_date=$run_date" "$@" >>"$log" 2>&1
code=$?
set -e
echo "=== $(date -Is) exit $code" >>"$log"
if [[ $code -ne 0 ]]; then
    echo "date-spark nightly $run_date failed (exit $code); the end of $log:" >&2
    tail -n 20 "$log" >&2
fi
exit "$code"
