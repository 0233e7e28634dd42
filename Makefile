# Two commands: `make run` (the main job) and `make test` (the whole suite).
# Both create .venv and install requirements.txt into it on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint notebooks clean help

help:
	@echo "make run        train on the Bach chorales, write outputs/ (ARGS=\"--source DIR\" etc.)"
	@echo "make test       ruff + pytest + every notebook through nbval (MELODY_FAST=1)"
	@echo "make notebooks  re-execute every notebook in full mode and save its outputs"

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m melody_utils run $(ARGS)

test: $(STAMP)
	$(PY) -m ruff check melody_utils tests benchmarks
	MELODY_FAST=1 MPLBACKEND=Agg $(PY) -m pytest -q

notebooks: $(STAMP)
	for nb in notebooks/0*.ipynb; do \
	  $(PY) -m jupyter nbconvert --to notebook --execute --inplace \
	    --ExecutePreprocessor.timeout=7200 \
	    --ExecutePreprocessor.record_timing=False "$$nb" || exit 1; done

clean:
	rm -rf $(VENV) data/cache outputs
