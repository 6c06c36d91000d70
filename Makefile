# Familiar entry points. Every target uses $(PYTHON) (default: python3), so
# run them inside an activated virtual environment or pass PYTHON=.venv/bin/python.
#
#   make install      install pulse with the dev and demo extras
#   make demo         the main job: database, pulsed, the SDK tour, cleanup
#   make test         install into .venv and run every test (what CI runs)
#   make run          pulsed in the foreground (DB_URL, or the local database "pulse")
#   make migrate_up   apply the migrations to that same database
#   make protos       regenerate the gRPC modules and typed stubs
#   make lint         ruff check, ruff format --check, mypy (strict)
#   make bench        the load generator

PYTHON ?= python3

# Keep this line identical to the test command in README.md and .ci/run
# (.ci/run checks that it is).
TEST_COMMAND = python3 -m venv .venv && .venv/bin/pip install -q '.[dev,demo]' && .venv/bin/python -m pytest

# Creates the database if missing; DB_URL or DB_HOST, when set, win.
DEV_DB = $(PYTHON) scripts/demo_db.py --dbname pulse

.PHONY: install demo test run migrate_up protos lint bench

install:
	$(PYTHON) -m pip install '.[dev,demo]'

demo:
	$(PYTHON) scripts/demo.py

test:
	$(TEST_COMMAND)

run:
	$(DEV_DB) -- $(PYTHON) -m pulsed.server

migrate_up:
	@$(DEV_DB) --embedded none -- $(PYTHON) -c "import logging; \
	from pulsed.config import Config; \
	from pulsed.database import Database; \
	from pulsed.migrate import apply_migrations; \
	logging.basicConfig(level=logging.INFO); \
	config = Config.from_env(); \
	db = Database(config.db_dsn, 1); \
	applied = apply_migrations(db); \
	db.close(); \
	print('applied: ' + (', '.join(applied) or 'nothing, the schema is up to date'))"

protos:
	$(PYTHON) scripts/gen_protos.py

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m mypy

bench:
	$(PYTHON) scripts/loadgen.py
