# One place that knows how to install and run the project.
# torch is installed FIRST and pinned: an unpinned torch request made before it pulls
# several GB of CUDA packages; with 2.13.0 present, our `torch>=2.3` needs nothing more.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH  ?= torch==2.13.0

.PHONY: install venv run test test-fast browser bench bench-reevaluate bench-ingest bench-service bench-app bench-pse bench-search bench-cluster bench-detector bench-xclip bench-fast-decode lint rules-check clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(TORCH)
	$(PIP) install --quiet -e '.[dev]'
	touch $@

install venv: $(VENV)/.installed

# The main job on the embedded defaults: scan a generated ingest folder offline with a
# tiny locally built checkpoint into .demo/policy-engine.sqlite (no network, no weights).
run: install
	$(VENV)/bin/policy-engine demo

# The storage tests also run against the local PostgreSQL server (skipped, with the
# reason, where it is absent). tests/conftest.py holds the same default, so a bare
# `pytest` tests the same; the benchmarks read it from here. Point it elsewhere to use
# another server.
POLICY_ENGINE_TEST_POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/test
export POLICY_ENGINE_TEST_POSTGRES_URL

# The browser tier opens reports in Debian's Chromium (apt; needs root). Where it cannot
# be installed, those tests are skipped and say why.
browser:
	@command -v chromium >/dev/null 2>&1 || apt-get install -y -q chromium >/dev/null 2>&1 \
	  || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1) \
	  || echo "note: could not install chromium; the browser tests will be skipped"

test: install browser
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not media and not slow and not browser and not cluster"

# The shipped rule sets must load and pass their own test cases.
rules-check: install
	$(VENV)/bin/policy-engine rules validate policy_engine/rules
	$(VENV)/bin/policy-engine rules test policy_engine/rules

bench: install
	$(PY) benchmarks/bench_scan.py

bench-reevaluate: install
	$(PY) benchmarks/bench_reevaluate.py

bench-ingest: install
	$(PY) benchmarks/bench_ingest.py

bench-service: install
	$(PY) benchmarks/bench_service.py

bench-app: install
	$(PY) benchmarks/bench_app.py

bench-pse: install
	$(PY) benchmarks/bench_pse.py

bench-detector: install
	$(PY) benchmarks/bench_detector.py

bench-xclip: install
	$(PY) benchmarks/bench_xclip.py

bench-fast-decode: install
	$(PY) benchmarks/bench_fast_decode.py

bench-search: install
	$(PY) benchmarks/bench_search.py

bench-cluster: install
	$(PY) benchmarks/bench_cluster.py

lint: install
	$(VENV)/bin/ruff check policy_engine tests benchmarks migrations

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
