# Insight KB: `make run` starts the demo site, `make test` runs the whole suite, `make loadtest`
# measures gunicorn and two workers under load. Each creates .venv and installs the pinned
# requirements on a fresh machine.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-12)

# torch with 2 threads was measured 20-300x slower than with 1 on the 2-core machines here.
export OMP_NUM_THREADS ?= 1
export MKL_NUM_THREADS ?= 1

.PHONY: install system-packages run test loadtest lint format clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

# Browser tests drive Debian's Chromium (Playwright's own browser download fails here), and the
# IDX loader is tested on Debian's Fashion-MNIST files. Installed with apt when missing; without
# root or apt the affected tests say why they skip.
system-packages:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	[ -d /usr/share/datasets/fashion-mnist ] || missing="$$missing dataset-fashion-mnist"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing$$missing with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing$$missing: install them (apt-get install$$missing) for the browser and IDX tests"; \
	  fi; \
	fi

# The worker uses Redis when it answers, else kombu's filesystem transport, so the demo runs
# on a laptop without Redis. Analyses never run inside the web process. The site is secure by
# default (DEBUG off, HTTPS only); the demo turns DEBUG on for itself to run over plain HTTP.
# The worker also runs the sweeper (kb/celery.py, RunSweeper), so there is no beat process.
run: export DEBUG = 1
run: install
	mkdir -p var/broker/processed var/broker/control
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput -v0
	$(PY) manage.py seed_demo
	@set -e; \
	if [ -z "$${CELERY_BROKER_URL:-}" ] && ! $(PY) -c "import redis, os; redis.Redis.from_url(os.environ.get('REDIS_URL', 'redis://127.0.0.1:6379/0'), socket_connect_timeout=1).ping()" 2>/dev/null; then \
	  echo "Redis is not answering: using the filesystem broker in var/broker"; \
	  export CELERY_BROKER_URL=filesystem://; \
	fi; \
	$(PY) -m celery -A kb worker -Q $${ANALYSIS_QUEUE:-analysis} -n worker1@%h --concurrency 1 --loglevel INFO & \
	worker=$$!; \
	trap 'kill $$worker 2>/dev/null; wait $$worker 2>/dev/null' EXIT INT TERM; \
	echo "Insight KB on http://127.0.0.1:8000/ (admin at /admin/); worker pid $$worker"; \
	$(PY) manage.py runserver --noreload 127.0.0.1:8000

test: install system-packages
	mkdir -p var
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -n 2

# gunicorn, two workers and a bounded load generator on loopback; prints requests per second,
# latency percentiles per endpoint and a final JSON line.
# The command itself runs with DEBUG on; the servers it starts get production settings.
loadtest: export DEBUG = 1
loadtest: install
	$(PY) manage.py benchmark load

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) db.sqlite3 media var staticfiles test-output
