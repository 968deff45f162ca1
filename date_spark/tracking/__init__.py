"""What a run remembers: `runs` (the run directory, its stage results and what a resume may change),
`atomic` (the one way a stage result's files are written: whole or not at all) and `mlflow_log`
(the one MLflow run per job: params, metrics, artifacts)."""
