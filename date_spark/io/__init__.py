"""The data going in and out of a run: `preflight` (checks before Spark starts), `read` (the input
contract, normalizing and profiling), `split` (deterministic train/validation/test rows), `output`
(the kept rows in the input's schema, committed atomically) and `locks` (one writer per output).

No module here imports pyspark at import time except `read` and `output`, so the command line's
preflight runs before a JVM starts."""
