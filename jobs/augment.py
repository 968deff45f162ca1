"""spark-submit entry point: `spark-submit jobs/augment.py --config conf/x.yaml [--set k=v ...]`.

Same arguments and exit codes as `date-spark run`."""

from __future__ import annotations

import sys

from date_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
