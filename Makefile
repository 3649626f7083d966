# woosync — build, demo, tests, benchmarks and packages. Every target installs what it needs.
#   make demo       build + local receiver + events through the real php binary
#   make test       Rust unit tests + integration tests (real php, real HTTP, real SQLite), then
#                   the tests that install the package into the system (alone, see test-system)
#   make bench      benchmarks (figures and ratios against baselines measured in the same run)
#   make bench-checkout  only the headline benchmark: real WooCommerce checkouts, CRM healthy/slow/dead (~15 min)
#   make bench-mysql     only the outbox in MariaDB (issue 11): dispatch vs bare INSERT and Action Scheduler,
#                        delivery, first attempt across hosts (~4 min)
#   make package    dist/woosync-php<MAJOR.MINOR>_<version>_<arch>.deb + the WordPress plugin zip
#   make install    the built extension into this PHP (php-config), enabled for the CLI and php-fpm
#   make uninstall  reverses make install

SHELL := /bin/bash
SO := $(CURDIR)/target/release/libwoosync.so
VENV := $(CURDIR)/.venv
PY := $(VENV)/bin/python
DIST := $(CURDIR)/dist
APT_PACKAGES := php-cli php-dev clang libclang-dev php-sqlite3 php-curl php-fpm libfcgi-bin sqlite3 python3-venv \
	dpkg-dev zip mariadb-server mariadb-client
# Tests that install woosync into the system (apt-get install of the .deb, make install) run in a
# second pytest invocation of their own: while woosync is enabled system-wide, every other test's
# `-d extension=` would load it twice.
PYTEST := $(VENV)/bin/pytest -q -p no:cacheprovider

.PHONY: all build deps test test-unit test-integration test-system demo bench bench-checkout bench-mysql package install uninstall clean

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

test: build test-unit test-integration test-system

test-unit:
	cargo test --release --lib

test-integration: build
	WOOSYNC_SO=$(SO) $(PYTEST) tests -m "not system_install"

test-system: build
	WOOSYNC_SO=$(SO) $(PYTEST) tests -m system_install

demo: build
	$(PY) scripts/demo.py $(SO)

bench: build
	$(PY) bench/bench.py --so $(SO)

bench-checkout: build
	$(PY) bench/bench.py --so $(SO) --only checkout

bench-mysql: build
	$(PY) bench/bench.py --so $(SO) --only mysql

package: build
	packaging/build.sh --so $(SO) --out $(DIST)

# Not `install: build`: `sudo make install` would run cargo as root (often without a toolchain) and
# leave root-owned files in target/. Build first as yourself.
install:
	@test -f $(SO) || { echo "no $(SO): run 'make build' first (as your user), then 'sudo make install'" >&2; exit 1; }
	packaging/install.sh install $(SO)

uninstall:
	packaging/install.sh uninstall

clean:
	cargo clean
	rm -rf $(VENV) $(DIST)
