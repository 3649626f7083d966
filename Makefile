# woosync — build, demo, tests and benchmarks. Every target installs what it needs.
#   make demo   build + local receiver + events through the real php binary
#   make test   Rust unit tests + integration tests (real php, real HTTP, real SQLite)
#   make bench  benchmarks (figures and ratios against baselines measured in the same run)

SHELL := /bin/bash
SO := $(CURDIR)/target/release/libwoosync.so
VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python
APT_PACKAGES := php-cli php-dev clang libclang-dev php-sqlite3 php-curl php-fpm libfcgi-bin sqlite3 python3-venv

.PHONY: all build deps test test-unit test-integration demo bench clean

all: build

deps: $(VENV)/.installed
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		export DEBIAN_FRONTEND=noninteractive; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

$(VENV)/.installed: tests/requirements.txt tests/requirements-browser.txt
	@command -v python3 >/dev/null || { echo "python3 is required"; exit 1; }
	@python3 -m venv $(VENV) 2>/dev/null || { \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq python3-venv >/dev/null && python3 -m venv $(VENV); }
	$(VENV)/bin/pip install -q -r tests/requirements.txt -r tests/requirements-browser.txt
	touch $@

build: deps
	cargo build --release

$(SO): build

test: build test-unit test-integration

test-unit:
	cargo test --release --lib

test-integration: build
	WOOSYNC_SO=$(SO) $(VENV)/bin/pytest tests -q -p no:cacheprovider

demo: build
	$(PY) scripts/demo.py $(SO)

bench: build
	$(PY) bench/bench.py --so $(SO)

clean:
	cargo clean
	rm -rf $(VENV)
