# Two commands: `make run` (the main job) and `make test` (the whole suite).
# Both create .venv and install requirements.txt into it on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CODE   := melody_utils tests benchmarks tools

.PHONY: run test lint format notebooks clean clean-cache help

help:
	@echo "make run          train on the Bach chorales, write outputs/ (ARGS=\"--source DIR\" etc.)"
	@echo "make test         lint + pytest + every notebook through nbval (MELODY_FAST=1)"
	@echo "make lint         ruff check and ruff format --check"
	@echo "make format       ruff format and the safe ruff fixes"
	@echo "make notebooks    re-execute every notebook in full mode and save its outputs"
	@echo "make clean-cache  delete the parsed-corpus cache only"
	@echo "make clean        delete .venv, the cache and outputs/"

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -r requirements.txt
	# tinysoundfont's only dependency, pyaudio, is for live playback (needs PortAudio);
	# offline rendering needs none, so it is installed without it.
	$(PY) -m pip install --quiet --no-deps tinysoundfont==0.3.7
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m melody_utils run $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check $(CODE)
	$(PY) -m ruff format --check $(CODE)

format: $(STAMP)
	$(PY) -m ruff check --fix $(CODE)
	$(PY) -m ruff format $(CODE)

test: lint
	MELODY_FAST=1 MPLBACKEND=Agg $(PY) -m pytest -q

notebooks: $(STAMP)
	$(PY) tools/execute_notebooks.py notebooks/*.ipynb

clean-cache:
	@if [ -x $(PY) ]; then $(PY) -c "from melody_utils.data import clear_cache; \
	  print(f'removed {len(clear_cache())} cache files')"; else rm -rf data/cache; fi

clean: clean-cache
	rm -rf $(VENV) outputs
