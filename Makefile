# Two commands: `make run` and `make test`. Both create .venv when missing and install what they need.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# llama-cpp-python compiles from source (about 5 minutes on 2 cores). The default native build dies
# with SIGILL on some CPUs, so it is built portably once and the wheel kept outside the repo.
LLAMA_VERSION := 0.3.36
WHEEL_CACHE ?= $(HOME)/.cache/date-spark/wheels
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
STAMP := $(VENV)/.date-spark-installed

export MLFLOW_DISABLE_TELEMETRY := true
export SPARK_LOCAL_IP := 127.0.0.1

.PHONY: run test test-fast lint typecheck bench bench-full bench-readme clean env browser

env: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	@if ! ls $(WHEEL_CACHE)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1; then \
		echo "building llama-cpp-python $(LLAMA_VERSION) portably (one time, about 5 minutes)"; \
		mkdir -p $(WHEEL_CACHE); \
		CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) wheel --no-deps --no-cache-dir \
			-w $(WHEEL_CACHE) "llama-cpp-python==$(LLAMA_VERSION)"; \
	fi
	$(PIP) install --quiet $(WHEEL_CACHE)/llama_cpp_python-$(LLAMA_VERSION)-*.whl
	$(PIP) install --quiet -e ".[dev,local-llm]"
	@touch $(STAMP)

run: $(STAMP)
	$(PY) -m date_spark.cli run --config conf/demo.yaml

# Two test processes (pytest-xdist), each with its one Spark session; `worksteal` keeps both busy
# while the slow tiers (cluster, Connect, notebooks, must-show scenarios) run. PYTEST_WORKERS=0
# runs everything in one process.
PYTEST_WORKERS ?= 2
test: $(STAMP) browser
	DATE_SPARK_NO_SKIP=1 $(PY) -m pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) --dist worksteal --durations=40

# The report test looks at the page in headless Chromium (Debian's package; no browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
		SUDO=; [ "$$(id -u)" = 0 ] || SUDO="sudo -n"; \
		echo "installing Debian's chromium for the report screenshot test"; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
			chromium >/dev/null || echo "could not install chromium; as root: apt-get install chromium"; }

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(PY) tools/check_structure.py date_spark
	$(VENV)/bin/ruff check date_spark jobs tests benchmarks tools
	$(VENV)/bin/ruff format --check date_spark jobs tests benchmarks tools
	$(VENV)/bin/mypy date_spark

# Benchmarks write benchmarks/results/<name>.json; the figures of benchmarks/README.md are rendered from them.
# `bench`: the quick ones (minutes); `bench-full`: all, up to 1e7 rows and the local model (hours).
BENCH_DATA ?= .bench-data
# The quick runs write <name>-quick.json; the block in benchmarks/README.md shows the full runs (bench-full).
bench: $(STAMP)
	$(PY) benchmarks/assign_rules.py --repeats 1 --name assign_rules-quick --data-dir $(BENCH_DATA)
	$(PY) benchmarks/llm_gateway.py --name llm_gateway-quick
	$(PY) benchmarks/discovery.py --sizes 1e5,1e6 --name discovery-quick --data-dir $(BENCH_DATA)
	$(PY) benchmarks/generation.py --skip-local --name generation-quick
	$(PY) benchmarks/prompt_budget.py --name prompt_budget-quick

bench-full: $(STAMP)
	$(PY) benchmarks/assign_rules.py --data-dir $(BENCH_DATA)
	$(PY) benchmarks/llm_gateway.py
	$(PY) benchmarks/discovery.py --sizes 1e5,1e6,1e7 --data-dir $(BENCH_DATA)
	$(PY) benchmarks/generation.py
	$(PY) benchmarks/paper_protocol.py
	$(PY) benchmarks/prompt_budget.py
	$(PY) benchmarks/local_timeout.py
	$(PY) benchmarks/refusal.py
	$(PY) benchmarks/real_tables.py
	$(PY) benchmarks/headroom.py
	$(PY) benchmarks/label_check.py
	$(PY) benchmarks/wide_tables.py
	$(PY) benchmarks/job_cost.py --data-dir $(BENCH_DATA)
	$(PY) benchmarks/readme_table.py --write

bench-readme: $(STAMP)
	$(PY) benchmarks/readme_table.py --write

clean:
	rm -rf $(VENV) build dist *.egg-info date_spark_runs output spark-warehouse $(BENCH_DATA)

# --- where to run it (deploy/README.md) ---------------------------------------------------
.PHONY: dist test-surfaces
# The wheel and sdist in dist/, plus the wheel under a .zip name for `spark-submit --py-files`
# (Spark puts only .zip/.egg/.jar py-files on the executors' Python path; a wheel is a zip).
dist: $(STAMP)
	rm -rf dist
	$(PY) -m build --outdir dist .
	cp dist/date_spark-*.whl dist/date_spark.zip
	@ls -1 dist

# Standalone cluster, Spark Connect, notebooks, nightly runs, packaging (also part of `make test`).
test-surfaces: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests/surfaces
