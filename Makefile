# The two commands a newcomer needs: `make run` and `make test` (see README.md).
#
# Both create .venv with python3 if it is missing and install the project into it; the
# install runs again only when pyproject.toml is newer than .venv/.installed.

PY = .venv/bin/python
STAMP = .venv/.installed

TEST_POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/hpo
TEST_SQLITE_URL = sqlite:///var/test.sqlite3
# Extra arguments for pytest, e.g. `make test-sqlite PYTEST_ARGS='-x tests/accounts'`.
PYTEST_ARGS ?=
# Tests that touch no database (the engine, the RunPod handler and emulator, the Docker
# files) run once, in the PostgreSQL pass of `make test`; the SQLite pass skips them.
NO_DATABASE_TESTS = --ignore=tests/workers/engine --ignore=tests/runpod_service --ignore=tests/docker

.PHONY: run test test-postgres test-sqlite fuzz bench bench-runpod bench-overhead bench-quality bench-scaling bench-latency install clean distclean

$(PY):
	python3 -m venv .venv

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The embedded default: SQLite under var/, no Redis, no variable to set. Ctrl+C stops both
# servers (serve supervises them) and then make.
run: $(STAMP)
	$(PY) manage.py migrate --noinput
	$(PY) manage.py bootstrap_demo
	$(PY) manage.py serve

# The whole suite twice: on PostgreSQL first, then on SQLite. The second run happens even
# if the first fails, so one CI log shows both; make fails if either did.
test: $(STAMP)
	@postgres=passed; sqlite=passed; \
	echo "== pytest on PostgreSQL ($(TEST_POSTGRES_URL))"; \
	DATABASE_URL='$(TEST_POSTGRES_URL)' $(PY) -m pytest $(PYTEST_ARGS) || postgres=FAILED; \
	echo "== pytest on SQLite ($(TEST_SQLITE_URL))"; \
	DATABASE_URL='$(TEST_SQLITE_URL)' $(PY) -m pytest $(NO_DATABASE_TESTS) $(PYTEST_ARGS) || sqlite=FAILED; \
	echo "== PostgreSQL: $$postgres, SQLite: $$sqlite"; \
	[ $$postgres = passed ] && [ $$sqlite = passed ]

test-postgres: $(STAMP)
	DATABASE_URL='$(TEST_POSTGRES_URL)' $(PY) -m pytest $(PYTEST_ARGS)

test-sqlite: $(STAMP)
	DATABASE_URL='$(TEST_SQLITE_URL)' $(PY) -m pytest $(PYTEST_ARGS)

# Schemathesis against /api/schema/ as a logged-in member, on the real ASGI app (minutes).
fuzz: $(STAMP)
	$(PY) tests/fuzz_api.py

bench: $(STAMP)
	$(PY) bench/storage.py

bench-overhead: $(STAMP)
	$(PY) bench/overhead.py

bench-quality: $(STAMP)
	$(PY) bench/quality.py

bench-scaling: $(STAMP)
	$(PY) bench/scaling.py

bench-runpod: $(STAMP)
	$(PY) bench/runpod_scaling.py

bench-latency: $(STAMP)
	$(PY) bench/latency.py

# Build and test leftovers; keeps .venv and the embedded database and demo login in var/.
clean:
	rm -rf build dist *.egg-info .pytest_cache
	rm -f var/test*.sqlite3 var/test*.sqlite3-wal var/test*.sqlite3-shm
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

# Everything `make run` made: the virtual environment, the embedded database, the demo login.
distclean: clean
	rm -rf .venv var
