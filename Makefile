# wsuv: `make test` and `make serve` work from a fresh clone on Debian.
# They install what is missing (apt packages when root, a virtualenv with
# wsuv in editable mode), rebuild the C core when csrc/ changed, then run.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
APT_PKGS := build-essential pkg-config libuv1-dev libhttp-parser-dev chromium nginx-light openssl
# Commands that may come from a package of another name (e.g. nodesource's
# nodejs ships npm): installed from Debian only when the command is missing.
APT_CMDS := node:nodejs npm:npm
CSRC := $(wildcard csrc/*.c csrc/*.h csrc/ffi/*.cdef) build_ffi.py setup.py pyproject.toml
CORE := $(VENV)/.core-built
PYTEST_ARGS ?=

.PHONY: all deps venv build test serve bench bench-parser asan lint clean

all: build

# System packages: installed only when missing and only when we are root.
deps: $(VENV)/.deps
$(VENV)/.deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	for pair in $(APT_CMDS); do command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing Debian packages:$$missing (run: sudo apt-get install$$missing)"; exit 1; fi; \
	fi
	@mkdir -p $(VENV)
	@touch $@

$(VENV)/bin/python: | $(VENV)/.deps
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel cffi

venv: $(VENV)/.installed
$(VENV)/.installed: $(VENV)/bin/python pyproject.toml
	$(PY) -m pip install -q --no-build-isolation -e '.[test]'
	@touch $@ $(CORE)

# Rebuild the extension in place whenever the C sources change.
build: $(CORE)
$(CORE): $(VENV)/.installed $(CSRC)
	$(PY) setup.py -q build_ext --inplace
	@touch $@

node_modules/.installed: package.json
	npm install --no-audit --no-fund --silent
	@touch $@

test: build node_modules/.installed
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check wsuv tests benchmarks build_ffi.py
	$(VENV)/bin/mypy

serve: build
	$(VENV)/bin/wsuv-serve $(ARGS)

# Benchmarks print ratios against peers measured in the same run.
bench: bench-parser

build/parser_bench: benchmarks/parser_bench.c csrc/wsparser.c csrc/wsframe.c csrc/wsparser.h csrc/wsframe.h
	@mkdir -p build
	$(CC) -O3 -std=c11 -Wall -Wextra -Werror -Icsrc -o $@ benchmarks/parser_bench.c csrc/wsparser.c csrc/wsframe.c

bench-parser: build build/parser_bench
	$(PY) -m pip install -q wsproto websockets
	./build/parser_bench
	$(PY) benchmarks/bench_parser.py $(ARGS)

# The whole suite against an ASan+UBSan build of the extension.
asan: venv
	WSUV_SANITIZE=address,undefined WSUV_DEBUG=1 $(PY) setup.py -q build_ext --inplace --force
	WSUV_SANITIZE=address,undefined ASAN_OPTIONS=detect_leaks=0 LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	  $(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS); rc=$$?; \
	  rm -f $(CORE); exit $$rc

clean:
	rm -rf build wsuv/_core.c wsuv/_core*.so wsuv/*.o $(CORE)

# wsuv against peer servers (websockets, picows, aiohttp, Node ws, socketify) under
# build/loadgen (C on libuv, wsuv's own frame code); writes benchmarks/RESULTS.md.
# Options: make bench-servers ARGS="--quick --servers wsuv-c,picows-uvloop --scenarios k16"
.PHONY: bench-servers
bench-servers: build node_modules/.installed
	@mkdir -p build
	gcc -O3 -std=gnu11 -Wall -Wextra -Icsrc -o build/loadgen benchmarks/loadgen.c \
	  csrc/wsparser.c csrc/wsframe.c csrc/sha1.c $$(pkg-config --cflags --libs libuv)
	@test -x benchmarks/.venv/bin/python || $(PYTHON) -m venv benchmarks/.venv
	@cmp -s benchmarks/requirements-peers.txt benchmarks/.venv/.requirements || { \
	  benchmarks/.venv/bin/pip install -q --upgrade pip && \
	  benchmarks/.venv/bin/pip install -q -r benchmarks/requirements-peers.txt && \
	  { benchmarks/.venv/bin/pip install -q socketify || echo "socketify did not install: it will be skipped"; } && \
	  cp benchmarks/requirements-peers.txt benchmarks/.venv/.requirements; }
	$(PY) benchmarks/bench_servers.py $(ARGS)
