# make run: the whole system with demo data.  make test: the full test suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test test-quick bench clean

# what running needs (make run); the tests and benchmarks add requirements-dev.txt
$(BIN)/.installed: requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed"'
	@echo "Installing what running needs into $(VENV) (requirements.txt; once)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check --progress-bar on -r requirements.txt
	$(BIN)/pip install --disable-pip-version-check --quiet --no-deps -e .
	@touch $@

$(BIN)/.installed-dev: $(BIN)/.installed requirements-dev.txt
	@echo "Installing what the tests and benchmarks need (requirements-dev.txt; once)"
	$(BIN)/pip install --disable-pip-version-check --progress-bar on -r requirements-dev.txt
	@touch $@

# FRESH=1 forgets the previous run's data and credentials (kept under .run/, or RUN_DIR)
run: $(BIN)/.installed
	@$(BIN)/python -m devtools.run $(if $(FRESH),--fresh) $(if $(RUN_DIR),--run-dir $(RUN_DIR))

# Debian tools the tests drive, as command:package; installed when missing and run as root
# (wrk: load test; prometheus, promtool, the Redis exporter: metrics and alert tests;
# chromium and its driver: the browser tests of /dashboard and /docs; rabbitmq-server: the
# tests with RabbitMQ as the broker start a node of their own from it; redis-server 7 and
# redis-cli: the tests on a Redis Cluster start one of their own, with sharded pub/sub)
TEST_TOOLS := wrk:wrk prometheus:prometheus promtool:prometheus \
	prometheus-redis-exporter:prometheus-redis-exporter chromium:chromium \
	chromedriver:chromium-driver docker-compose:docker-compose shellcheck:shellcheck \
	rabbitmq-server:rabbitmq-server redis-server:redis-server redis-cli:redis-tools

test: $(BIN)/.installed-dev
	@missing=""; for t in $(TEST_TOOLS); do command -v $${t%%:*} >/dev/null || missing="$$missing $${t#*:}"; done; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ]; then \
		echo "installing$$missing"; apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; fi
	$(BIN)/python -m pytest

test-quick: $(BIN)/.installed-dev
	$(BIN)/python -m pytest -m "not slow"

bench: $(BIN)/.installed-dev
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python -m bench.serve
	$(BIN)/python -m bench.servers
	$(BIN)/python -m bench.regen
	$(BIN)/python -m bench.load
	$(BIN)/python -m bench.imports
	$(BIN)/python -m bench.archive
	$(BIN)/python -m bench.ratelimit
	$(BIN)/python -m bench.report_ctr
	$(BIN)/python -m bench.employers --jobs 2
	$(BIN)/python -m bench.user_memory
	$(BIN)/python -m bench.regions
	$(BIN)/python -m bench.simulate --fast --core 0 --seeds 8
	$(BIN)/python -m bench.worlds --jobs 2
	$(BIN)/python -m bench.worlds --sweep --seeds 3 --jobs 2
	$(BIN)/python -m bench.explain

clean:
	rm -rf $(VENV) .run .pytest_cache .hypothesis
