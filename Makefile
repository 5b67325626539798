# Everything a fresh machine needs: `make run` and `make test` create .venv on first use.
# The interpreter: the first Python >= 3.12 found (pyenv's 3.12 is selected by .python-version).
PYTHON_BOOT ?= $(shell for p in python3.12 python3.13 $(HOME)/.pyenv/versions/3.12*/bin/python3 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null \
	&& { echo $$p; break; }; done)
VENV := .venv
PY := $(VENV)/bin/python
CONFIG ?= configs/baseline.toml

.PHONY: run test lint format bench bench-scale validate browser clean

$(VENV)/.installed: pyproject.toml
	@test -n "$(PYTHON_BOOT)" || { echo "error: no Python >= 3.12 found (install one, e.g. pyenv install 3.12)"; exit 2; }
	$(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

run: $(VENV)/.installed
	$(VENV)/bin/cascadelab run $(CONFIG)

# One pytest worker per core (pytest-xdist), each test file on one worker so a file's
# module fixtures (a Dask cluster, a crash run) are built once.
test: $(VENV)/.installed browser
	$(PY) -m pytest -q -n auto --dist loadfile

# The report tests open reports in Debian's headless Chromium; install it when we can.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "note: the browser tests are skipped without chromium (apt-get install chromium)"; fi; }

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.installed
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(VENV)/.installed
	$(PY) bench/bench_book.py
	$(PY) bench/bench_margin.py
	$(PY) bench/bench_liquidation.py
	$(PY) bench/bench_agents.py
	$(PY) bench/bench_run.py
	$(PY) bench/bench_sweep.py

# The 100,000-account flash crash against the pre-issue-11 code (long: minutes; not in `make bench`).
bench-scale: $(VENV)/.installed
	$(PY) bench/bench_scale.py

# The stylized-facts validation (long: 10-20 min on 2 cores); exits 1 if a target misses.
validate: $(VENV)/.installed
	$(PY) validation/stylized_facts.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache sim/__pycache__ agents/__pycache__
