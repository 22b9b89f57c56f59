# The two README commands are `make demo` and `make test`; each sets up what it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
# Python 3.13 is the runtime on both platforms: the suite runs there too where pyenv has it, and the
# artifacts' bytecode is compiled with it. (A pyenv shim named python3.13 may exist without working, so
# each candidate must run and be 3.13.)
PY313 ?= $(shell for p in $$(ls -d $$(pyenv root 2>/dev/null)/versions/3.13*/bin/python3.13 2>/dev/null) \
	$$(command -v python3.13) $$(command -v python3); do \
	"$$p" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null && echo "$$p" && break; done)
VENV313 ?= .venv-3.13
REQUIREMENTS = import sys, tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
	print("\n".join(p["dependencies"] + (p["optional-dependencies"]["dev"] if sys.argv[1:] == ["dev"] else [])))

.PHONY: package-ncp demo test lint typecheck unit test-313 bench bench-smoke clean build-LauncherFunction

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

test: lint typecheck unit test-313 bench-smoke

lint: $(VENV)/.stamp
	$(VENV)/bin/ruff check handler emulator tests bench deploy
	$(VENV)/bin/ruff format --check handler emulator tests bench deploy
	$(VENV)/bin/cfn-lint template.yaml

typecheck: $(VENV)/.stamp
	$(VENV)/bin/mypy  # strict, over the packages pyproject.toml lists

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

# Every figure of the performance table: on Python 3.13 (the runtime) first, then the default Python,
# each measured against its baseline in one interleaved run, with both artifacts built fresh; then the
# burst simulation (10,000 uploads through five container processes, about two minutes) and the NAVER Cloud
# simulation (one activation per upload, sweeps making up for the failed ones, about a minute) on 3.13.
bench: $(VENV)/.stamp
	@$(MAKE) --no-print-directory -s package-ncp >/dev/null
	@rm -rf dist/lambda-build && $(MAKE) --no-print-directory -s build-LauncherFunction ARTIFACTS_DIR=dist/lambda-build >/dev/null
	@if [ -n "$(PY313)" ]; then $(MAKE) --no-print-directory $(VENV313)/.stamp && \
		$(VENV313)/bin/python -m bench.submit --ncp-zip dist/ncp-action.zip --lambda-dir dist/lambda-build && \
		$(VENV313)/bin/python -m bench.burst && \
		$(VENV313)/bin/python -m bench.ncp_sim; \
	else echo "SKIPPED: no Python 3.13 found; the figures below are for $$($(PYTHON) --version) only"; fi
	@$(VENV)/bin/python -m bench.submit --ncp-zip dist/ncp-action.zip --lambda-dir dist/lambda-build

# A few calls of each bench part (it runs; timings are not checked). tests/integration/test_artifacts.py
# runs the same smoke with freshly built artifacts.
bench-smoke: $(VENV)/.stamp
	@$(VENV)/bin/python -m bench.submit --smoke

# Called by `sam build` (BuildMethod: makefile, through deploy/lambda/Makefile): handler/ and the runtime
# wheels, pure Python only (so the template may choose x86_64 or arm64), pruned, with bytecode for python3.13;
# no Docker involved. ROUTES_FILE=path/to/routes.json ships a routes file of your own as handler/routes.json
# (DATAFLOW_ROUTES=@routes.json), for package-ncp too; relative paths are read from where make runs.
ROUTES_FILE ?=
ROUTES_PATH = $(if $(ROUTES_FILE),$(abspath $(ROUTES_FILE)))
build-LauncherFunction:
	@test -n "$(ARTIFACTS_DIR)" || { echo "ARTIFACTS_DIR is not set (sam build sets it)"; exit 1; }
	@python3 deploy/bundle.py "$(ARTIFACTS_DIR)" --python313 "$(PY313)" --routes "$(ROUTES_PATH)"

# The NAVER Cloud Functions zip: __main__.py at the root, handler/, and the runtime wheels in
# virtualenv/, which the launcher activates through activate_this.py; same wheels and bytecode as above.
DIST ?= dist
NCP_BUILD = $(DIST)/ncp-build
# Quiet when it works (what it wrote, and that the smoke test passed); every error is still shown.
package-ncp:
	@rm -rf $(NCP_BUILD) $(DIST)/ncp-action.zip
	@mkdir -p $(NCP_BUILD)/virtualenv/bin
	@cp deploy/ncp/__main__.py $(NCP_BUILD)/__main__.py
	@cp deploy/ncp/activate_this.py $(NCP_BUILD)/virtualenv/bin/activate_this.py
	@$(PYTHON) deploy/bundle.py $(NCP_BUILD) --site virtualenv/lib/python3.13/site-packages --python313 "$(PY313)" \
		--routes "$(ROUTES_PATH)"
	@cd $(NCP_BUILD) && $(PYTHON) -m zipfile -c ../ncp-action.zip __main__.py __pycache__ handler virtualenv
	@echo "wrote $(DIST)/ncp-action.zip ($$(du -h $(DIST)/ncp-action.zip | cut -f1))"
	@rm -rf $(DIST)/ncp-smoke && $(PYTHON) -m zipfile -e $(DIST)/ncp-action.zip $(DIST)/ncp-smoke
	@if [ -n "$(PY313)" ]; then PYTHONDONTWRITEBYTECODE=1 $(PY313) -s -S deploy/ncp/smoke.py $(DIST)/ncp-smoke; \
	else echo "SKIPPED: no Python 3.13 here to smoke-test the zip"; fi
	@rm -rf $(DIST)/ncp-smoke

clean:
	rm -rf $(VENV) $(VENV313) dist .mypy_cache .ruff_cache .hypothesis
