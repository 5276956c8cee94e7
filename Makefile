# The one place that names the project's commands.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: install run test lint format bench openapi clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## make run: install, migrate the embedded SQLite database, start the API with the demo policy
run: install
	$(BIN)/cdp serve --host $(HOST) --port $(PORT)

## make test: install, lint, type-check, then the whole suite on SQLite and PostgreSQL
test: install lint
	$(BIN)/cdp openapi export --check
	$(BIN)/pytest -q -m "not slow" --ignore=tests/bench

lint: install
	$(BIN)/ruff check src tests migrations
	$(BIN)/ruff format --check src tests migrations
	$(BIN)/mypy

format: install
	$(BIN)/ruff format src tests migrations
	$(BIN)/ruff check --fix src tests migrations

## make bench: the benchmarks under tests/bench (not part of make test)
bench: install
	@command -v wrk >/dev/null || apt-get install -y -q wrk || (apt-get update -q && apt-get install -y -q wrk)
	$(BIN)/pytest -q -s tests/bench

openapi: install
	$(BIN)/cdp openapi export

clean:
	rm -rf $(VENV) .cdp .pytest_cache .mypy_cache .ruff_cache
