# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1
export PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE := 100
export PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE := 100
export PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE := 200

.PHONY: install demo test lint typecheck pytest bench server clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/spirale demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

PG_TEST_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test

# Pass 1: the whole suite on SQLite. Pass 2: every database test again on PostgreSQL
# (required in CI through SPIRALE_REQUIRE_POSTGRES=1; skipped with a visible reason elsewhere).
pytest: $(STAMP)
	env -u SPIRALE_TEST_DATABASE_URL $(BIN)/python -m pytest
	@url="$${SPIRALE_TEST_DATABASE_URL:-$(PG_TEST_URL)}"; \
	if $(BIN)/python scripts/pg_available.py "$$url"; then \
	  echo "== PostgreSQL pass on $$url =="; \
	  SPIRALE_TEST_DATABASE_URL="$$url" $(BIN)/python -m pytest -m "db or postgres"; \
	elif [ -n "$$SPIRALE_REQUIRE_POSTGRES" ]; then \
	  echo "PostgreSQL pass required but $$url is unreachable" >&2; exit 1; \
	else \
	  echo "== PostgreSQL pass SKIPPED: no server at $$url (set SPIRALE_TEST_DATABASE_URL) =="; \
	fi

test: lint typecheck pytest

# A local Prefect server with its UI at http://127.0.0.1:4200 (telemetry off, batched recorders).
server: $(STAMP)
	$(BIN)/spirale server --host 127.0.0.1 --port 4200

bench: $(STAMP)
	$(BIN)/python -m benchmarks.schedule
	$(BIN)/python -m benchmarks.enroll
	$(BIN)/python -m benchmarks.dispatch

clean:
	rm -rf var/spirale.db* var/outbox var/demo
