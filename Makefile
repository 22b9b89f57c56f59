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

.PHONY: package-ncp demo test lint typecheck unit test-313 bench clean build-LauncherFunction

# A venv is (re)built whenever pyproject.toml changes; the stamp records that it is complete.
%/.stamp: pyproject.toml
	@echo "Setting up $* with the pinned dependencies (first run, or pyproject.toml changed: about 20-60 s)..."
	@rm -rf $*
	@$(if $(filter $(VENV313),$*),$(PY313),$(PYTHON)) -m venv $*
	@$*/bin/python -c '$(REQUIREMENTS)' dev > $*/requirements.txt
	@$*/bin/python -m pip install --quiet --disable-pip-version-check -r $*/requirements.txt
	@touch $@

# The demo runs in its own configuration whatever is exported; VERBOSE=1 adds every log record.
demo: $(VENV)/.stamp
	@VERBOSE=$(VERBOSE) $(VENV)/bin/python -m emulator.demo

test: lint typecheck unit test-313

lint: $(VENV)/.stamp
	$(VENV)/bin/ruff check handler emulator tests bench deploy
	$(VENV)/bin/ruff format --check handler emulator tests bench deploy
	$(VENV)/bin/cfn-lint template.yaml

typecheck: $(VENV)/.stamp
	$(VENV)/bin/mypy --strict handler

# The soak (exactly-once under faults, about 30 s) runs once: under 3.13, the runtime, where it exists.
unit: $(VENV)/.stamp
	$(VENV)/bin/python -m pytest $(if $(PY313),-m "not soak")

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

# Called by `sam build` (BuildMethod: makefile): the package and its runtime wheels for Lambda's
# python3.13 on x86_64, nothing else from the checkout.
build-LauncherFunction:
	mkdir -p "$(ARTIFACTS_DIR)"
	cp -R handler "$(ARTIFACTS_DIR)/"
	find "$(ARTIFACTS_DIR)/handler" -name __pycache__ -prune -exec rm -rf {} +
	python3 -c '$(REQUIREMENTS)' > "$(ARTIFACTS_DIR)/.requirements.txt"
	python3 -m pip install --quiet --disable-pip-version-check --target "$(ARTIFACTS_DIR)" \
		--platform manylinux2014_x86_64 --implementation cp --python-version 3.13 --only-binary=:all: \
		-r "$(ARTIFACTS_DIR)/.requirements.txt"
	rm "$(ARTIFACTS_DIR)/.requirements.txt"

# The NAVER Cloud Functions zip: __main__.py at the root, handler/, and the runtime wheels for
# python:3.13 (Linux x86-64) in virtualenv/, which the launcher activates through activate_this.py.
NCP_BUILD := dist/ncp-build
NCP_SITE := $(NCP_BUILD)/virtualenv/lib/python3.13/site-packages
package-ncp:
	rm -rf $(NCP_BUILD) dist/ncp-action.zip
	mkdir -p $(NCP_SITE) $(NCP_BUILD)/virtualenv/bin
	cp deploy/ncp/__main__.py $(NCP_BUILD)/__main__.py
	cp deploy/ncp/activate_this.py $(NCP_BUILD)/virtualenv/bin/activate_this.py
	cp -R handler $(NCP_BUILD)/handler
	find $(NCP_BUILD) -name __pycache__ -prune -exec rm -rf {} +
	$(PYTHON) -c '$(REQUIREMENTS)' > $(NCP_BUILD)/requirements.txt
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --target $(NCP_SITE) --no-compile \
		--platform manylinux2014_x86_64 --implementation cp --python-version 3.13 --only-binary=:all: \
		-r $(NCP_BUILD)/requirements.txt
	rm $(NCP_BUILD)/requirements.txt
	cd $(NCP_BUILD) && $(PYTHON) -m zipfile -c ../ncp-action.zip __main__.py handler virtualenv
	@echo "wrote dist/ncp-action.zip ($$(du -h dist/ncp-action.zip | cut -f1))"
	@rm -rf dist/ncp-smoke && $(PYTHON) -m zipfile -e dist/ncp-action.zip dist/ncp-smoke
	@if [ -n "$(PY313)" ]; then $(PY313) -I -S deploy/ncp/smoke.py dist/ncp-smoke; \
	else echo "SKIPPED: no Python 3.13 here to smoke-test the zip"; fi
	@rm -rf dist/ncp-smoke

clean:
	rm -rf $(VENV) $(VENV313) dist .mypy_cache .ruff_cache .hypothesis
