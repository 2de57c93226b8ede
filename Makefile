# The two commands of the README: `make demo` and `make test`. Both build the
# virtual environment in .venv from pyproject.toml when it is missing or stale.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

VIEWERS ?= 10
DURATION ?= 30

.PHONY: demo test lint bench setup bytecode
# a bare `make` sets up (and rebuilds a compiled module whose source changed), runs nothing
.DEFAULT_GOAL := setup

# The network-namespace testbed (bench/testbed.py, tests/testbed) needs iptables and
# libnetfilter_queue (the NFQUEUE delayer's binding builds against it). Installed from
# Debian when missing and we are root with apt-get; otherwise a message, and the
# testbed's extra (and its tests) are skipped.
TESTBED_SYS := $(shell command -v iptables >/dev/null 2>&1 && test -e /usr/include/libnetfilter_queue/libnetfilter_queue.h && echo yes)
# Debian's Chromium plays short videos from the gateway in a real <video> element
# (tests/node/test_node_files_browser.py, driven by Playwright without its own browser
# download); installed the same way, skipped with a message otherwise.
BROWSER_SYS := $(shell test -x /usr/bin/chromium && echo yes)

$(STAMP): pyproject.toml
	@echo "setting up $(VENV): pinned dependencies from pyproject.toml (first time: a few minutes)"
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@if [ "$(TESTBED_SYS)" != yes ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing iptables and libnetfilter-queue-dev for the testbed (apt-get)"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
				iptables libnetfilter-queue-dev gcc libc6-dev >/dev/null; \
		else \
			echo "note: the network testbed needs iptables and libnetfilter-queue-dev (Debian);"; \
			echo "      not root or no apt-get: skipping them (tests/testbed will be skipped)"; \
		fi; \
	fi
	@if [ "$(BROWSER_SYS)" != yes ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing chromium for the browser playback test (apt-get)"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
				chromium >/dev/null; \
		else \
			echo "note: the browser playback test needs Debian's chromium (/usr/bin/chromium): it will be skipped"; \
		fi; \
	fi
	if command -v iptables >/dev/null 2>&1 && test -e /usr/include/libnetfilter_queue/libnetfilter_queue.h; then \
		$(BIN)/python -m pip install --quiet -e '.[dev,testbed]'; \
	else \
		$(BIN)/python -m pip install --quiet -e '.[dev]'; \
	fi
	touch $(STAMP)

# The hottest protocol cores compiled with mypyc from the same sources (about 1.8x
# faster in the simulator; oasis/core/__init__.py falls back to the sources if an
# extension is stale). No C compiler: the pure-Python core runs, with a message.
CORE_SRC := oasis/core/chunklog.py oasis/core/upload.py oasis/core/pull.py oasis/core/swarmdefs.py oasis/core/delay.py oasis/core/tree.py oasis/core/repair.py oasis/core/claims.py oasis/core/serve.py oasis/core/swarm.py oasis/sim/oasis_run.py oasis/node/udp.py oasis/node/link.py oasis/node/transport.py
CORE_STAMP := $(VENV)/.core-compiled

$(CORE_STAMP): $(STAMP) $(CORE_SRC)
	mkdir -p build
	@echo "compiling the protocol core with mypyc (about a minute; log: build/mypyc.log)"
	if $(BIN)/python scripts/build_core.py > build/mypyc.log 2>&1; then \
		echo "compiled the protocol core with mypyc"; \
	else \
		echo "mypyc could not compile the core (see build/mypyc.log): running it as Python"; \
		rm -f oasis/core/*.so oasis/sim/*.so oasis/node/*.so; \
	fi
	touch $(CORE_STAMP)

# Bytecode for the package, written even where PYTHONDONTWRITEBYTECODE is set (as on
# some CI machines): every node the demo and the tests start is its own process, and
# one that compiles the package's ~460 modules from source spends ~0.3 s of CPU more
# at start; 20 viewers starting at once on 2 cores feel it. Up to date: ~0.1 s.
bytecode: $(STAMP)
	$(BIN)/python -m compileall -q oasis > /dev/null

# The web player's browser package (mpegts.js, pinned in web/package-lock.json) from the npm
# registry, at set-up only (nothing is fetched at run time): copied into the package, where
# the gateway serves it (/web/vendor/). npm from Debian when missing and we are root; otherwise
# a message, and /watch/<stream> says the player was not built.
WEB_VENDOR := oasis/node/web/vendor/mpegts.js

$(WEB_VENDOR): web/package.json web/package-lock.json
	@if ! command -v npm >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing npm for the web player's package (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			npm >/dev/null; \
	fi
	@if command -v npm >/dev/null 2>&1; then \
		echo "building the web player (npm ci in web/: mpegts.js)"; \
		( npm ci --prefix web --ignore-scripts --no-audit --no-fund --loglevel=error && \
		  mkdir -p oasis/node/web/vendor && \
		  cp web/node_modules/mpegts.js/dist/mpegts.js web/node_modules/mpegts.js/dist/mpegts.js.LICENSE.txt \
			oasis/node/web/vendor/ ) || \
		echo "note: npm could not build the web player (no registry?): /watch/<stream> says so; desktop players still work"; \
	else \
		echo "note: no npm: the web player (/watch/<stream>) is not built; desktop players still work"; \
	fi

setup: $(STAMP) $(CORE_STAMP) bytecode $(WEB_VENDOR)

demo: $(STAMP) $(CORE_STAMP) bytecode $(WEB_VENDOR)
	$(BIN)/oasis demo --viewers $(VIEWERS) --duration $(DURATION)

test: $(STAMP) $(CORE_STAMP) bytecode $(WEB_VENDOR)
	$(BIN)/ruff check oasis tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -n 3 --dist loadfile -m "not serial" --durations=15
	$(BIN)/python -m pytest -q -p no:xdist -m serial --durations=10

bench: $(STAMP) $(CORE_STAMP)
	$(BIN)/python bench/live_swarm.py --viewers 20 --duration 60
