# One install path: a virtual environment built from the hash-pinned lock file.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv demo test test-fast bench lint lock clean

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: venv
	OMP_NUM_THREADS=1 $(BIN)/python -m agent.demo

test: venv
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q

bench: venv
	OMP_NUM_THREADS=1 $(BIN)/python benchmarks/run_all.py --quick

lint: venv
	$(BIN)/ruff check agent central tests benchmarks
	$(BIN)/ruff format --check agent central tests benchmarks
	$(BIN)/mypy

# Regenerate the lock after editing pyproject.toml dependencies.
lock:
	$(PYTHON) -m pip install --quiet uv
	$(PYTHON) -m uv pip compile pyproject.toml --extra dev --python-version 3.11 --generate-hashes -o requirements.lock

clean:
	rm -rf $(VENV) build *.egg-info
