# The README's two commands are `make run` and `make test`; everything else
# here is what they (and .ci/run) are made of.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test install thirdparty gen gen-check lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## Start the server on the embedded SQLite default (REST :3000, gRPC :3001).
run: $(STAMP)
	$(VENV)/bin/agentplane server

## Run the whole test suite (SQLite always; PostgreSQL when reachable, mandatory with CI=true).
test: $(STAMP)
	$(PY) -m pytest

## Third-party protocol peers the tests run against (yamux-js under Node.js),
## from tests/thirdparty/package-lock.json.
thirdparty:
	npm ci --prefix tests/thirdparty --no-audit --no-fund

## Regenerate gen/ from proto/ (committed; CI checks it is fresh).
gen: $(STAMP)
	$(PY) -m server.tools.genproto

gen-check: $(STAMP)
	$(PY) -m server.tools.genproto --check

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/buf lint

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) *.egg-info
