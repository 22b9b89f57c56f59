# The two README commands are `make demo` and `make test`; each sets up what it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
# Python 3.13 is the runtime on both platforms: the suite runs there too where pyenv has it.
# (A pyenv shim named python3.13 may exist without working, so each candidate must run.)
PY313 ?= $(shell for p in $$(ls -d $$(pyenv root 2>/dev/null)/versions/3.13*/bin/python3.13 2>/dev/null) \
	$$(command -v python3.13); do "$$p" -c '' 2>/dev/null && echo "$$p" && break; done)
VENV313 ?= .venv-3.13
REQUIREMENTS = import sys, tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
	print("\n".join(p["dependencies"] + (p["optional-dependencies"]["dev"] if sys.argv[1:] == ["dev"] else [])))

.PHONY: demo test lint typecheck unit test-313 bench clean

# A venv is (re)built whenever pyproject.toml changes; the stamp records that it is complete.
%/.stamp: pyproject.toml
	@rm -rf $*
	@$(if $(filter $(VENV313),$*),$(PY313),$(PYTHON)) -m venv $*
	@$*/bin/python -c '$(REQUIREMENTS)' dev > $*/requirements.txt
	@$*/bin/python -m pip install --quiet --disable-pip-version-check -r $*/requirements.txt
	@touch $@

demo: $(VENV)/.stamp
	@$(VENV)/bin/python -m emulator.demo

test: lint typecheck unit test-313

lint: $(VENV)/.stamp
	$(VENV)/bin/ruff check handler emulator tests bench
	$(VENV)/bin/ruff format --check handler emulator tests bench

typecheck: $(VENV)/.stamp
	$(VENV)/bin/mypy --strict handler

unit: $(VENV)/.stamp
	$(VENV)/bin/python -m pytest

test-313:
	@if [ -n "$(PY313)" ]; then \
		$(MAKE) --no-print-directory $(VENV313)/.stamp && \
		echo "== the suite again under $$($(VENV313)/bin/python --version)" && \
		$(VENV313)/bin/python -m pytest; \
	else \
		echo "SKIPPED: no Python 3.13 found (pyenv or python3.13 on PATH); the suite ran only under $$($(PYTHON) --version)"; \
	fi

bench: $(VENV)/.stamp
	$(VENV)/bin/python -m bench.submit

clean:
	rm -rf $(VENV) $(VENV313) dist .mypy_cache .ruff_cache .hypothesis
