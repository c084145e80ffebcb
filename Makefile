# The two commands the README opens with: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint system-deps bench-startup clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

system-deps:
	bash scripts/system-deps.sh

demo: system-deps $(VENV)/.installed
	$(PY) -m scripts.demo

test: system-deps $(VENV)/.installed
	$(PY) -m pytest -q

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check awops tests bench scripts
	$(VENV)/bin/ruff format --check awops tests bench scripts
	$(VENV)/bin/mypy

bench-startup: $(VENV)/.installed
	$(PY) -m bench.startup

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
