"""Where the work runs: `spark` (the session and its settings), `placement` (driver or cluster, and
the driver's worker processes) and `interrupts` (a clean stop on Ctrl-C or SIGTERM)."""
