"""What a run remembers: `runs` (the run directory, its stage results and what a resume may change)
and `mlflow_log` (the one MLflow run per job: params, metrics, artifacts)."""
