# wsuv: `make test` and `make serve` work from a fresh clone on Debian.
# They install what is missing (apt packages when root, a virtualenv with
# wsuv in editable mode), rebuild the C core when csrc/ changed, then run.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
APT_PKGS := build-essential pkg-config libuv1-dev libhttp-parser-dev zlib1g-dev libssl-dev libhiredis-dev redis-server chromium nginx-light openssl
# Commands that may come from a package of another name (e.g. nodesource's
# nodejs ships npm): installed from Debian only when the command is missing.
APT_CMDS := node:nodejs npm:npm
CSRC := $(wildcard csrc/*.c csrc/*.h csrc/ffi/*.cdef) build_ffi.py setup.py pyproject.toml
CORE := $(VENV)/.core-built
PYTEST_ARGS ?=

.PHONY: all deps venv build test test-embedded serve bench bench-parser bench-clients asan lint clean

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
	$(PY) setup.py -q build_ext --inplace --force
	@touch $@

node_modules/.installed: package.json
	npm install --no-audit --no-fund --silent
	@touch $@

test: build node_modules/.installed
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The server, interop and conformance suites again, every server embedded in
# a running asyncio loop and then in uvloop (wsuv.aio).
EMBEDDED_TESTS ?= tests/server tests/interop tests/conformance
test-embedded: build node_modules/.installed
	WSUV_TEST_LOOP=asyncio $(PY) -m pytest -q -p no:cacheprovider $(EMBEDDED_TESTS)
	WSUV_TEST_LOOP=uvloop $(PY) -m pytest -q -p no:cacheprovider $(EMBEDDED_TESTS)

lint: venv
	$(VENV)/bin/ruff check wsuv tests benchmarks build_ffi.py
	$(VENV)/bin/mypy

serve: build
	$(VENV)/bin/wsuv-serve $(ARGS)

# Benchmarks print ratios against peers measured in the same run.
bench: bench-parser bench-servers bench-pubsub bench-clients

build/parser_bench: benchmarks/parser_bench.c csrc/wsparser.c csrc/wsframe.c csrc/wsparser.h csrc/wsframe.h
	@mkdir -p build
	$(CC) -O3 -std=c11 -Wall -Wextra -Werror -Icsrc -o $@ benchmarks/parser_bench.c csrc/wsparser.c csrc/wsframe.c

# zlib against libdeflate for one 1 KiB JSON message (needs libdeflate-dev; not a
# dependency of wsuv: see docs/PERFORMANCE.md for why it is not used).
build/deflate_bench: benchmarks/deflate_bench.c
	@mkdir -p build
	$(CC) -O3 -std=gnu11 -Wall -Wextra -Werror -o $@ benchmarks/deflate_bench.c -lz -ldeflate

# What csrc/pmdeflate.c costs per 1 KiB JSON message at each zlib level, window
# and memLevel: the measurement behind the compression_* defaults.
build/pmd_sweep: benchmarks/pmd_sweep.c csrc/pmdeflate.c csrc/pmdeflate.h
	@mkdir -p build
	$(CC) -O2 -std=gnu11 -Wall -Wextra -Werror -Icsrc -o $@ benchmarks/pmd_sweep.c csrc/pmdeflate.c -lz

bench-parser: build build/parser_bench
	$(PY) -m pip install -q wsproto websockets
	./build/parser_bench
	$(PY) benchmarks/bench_parser.py $(ARGS)

# The whole suite against an ASan+UBSan build of the extension. The sanitized
# build lives in a copy of the tree (build/asan/tree) and is put first on
# PYTHONPATH, so the checkout's own extension (and .venv/bin/wsuv-serve) is
# never replaced, not even while this runs or after it was interrupted.
ASAN_TREE := build/asan/tree
asan: venv node_modules/.installed
	@rm -rf build/asan; mkdir -p $(ASAN_TREE) build/asan/reports
	@git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t $(ASAN_TREE)
	@ln -s $(CURDIR)/node_modules $(ASAN_TREE)/node_modules
	cd $(ASAN_TREE) && WSUV_SANITIZE=address,undefined WSUV_DEBUG=1 $(CURDIR)/$(PY) setup.py -q build_ext --inplace --force
	cd $(ASAN_TREE) && PYTHONPATH=$(CURDIR)/$(ASAN_TREE) WSUV_SANITIZE=address,undefined \
	  ASAN_OPTIONS=detect_leaks=0:log_path=$(CURDIR)/build/asan/reports/asan \
	  UBSAN_OPTIONS=print_stacktrace=1:log_path=$(CURDIR)/build/asan/reports/ubsan \
	  LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	  $(CURDIR)/$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS); rc=$$?; \
	  if ls $(CURDIR)/build/asan/reports/* >/dev/null 2>&1; then \
	    echo "sanitizer reports (kept in build/asan/reports/; pytest's capture would hide them):"; \
	    cat $(CURDIR)/build/asan/reports/*; rc=1; fi; exit $$rc

clean:
	rm -rf build wsuv/_core.c wsuv/_core*.so wsuv/*.o $(CORE)

# wsuv against peer servers (websockets, picows, aiohttp, Node ws, socketify) under
# build/loadgen (C on libuv, wsuv's own frame code); writes benchmarks/RESULTS.md.
# Options: make bench-servers ARGS="--quick --servers wsuv-c,picows-uvloop --scenarios k16"
.PHONY: bench-servers
build/loadgen: benchmarks/loadgen.c csrc/wsparser.c csrc/wsframe.c csrc/sha1.c csrc/pmdeflate.c csrc/tls.c
	@mkdir -p build
	gcc -O3 -std=gnu11 -Wall -Wextra -Icsrc -o build/loadgen benchmarks/loadgen.c \
	  csrc/wsparser.c csrc/wsframe.c csrc/sha1.c csrc/pmdeflate.c csrc/tls.c \
	  $$(pkg-config --cflags --libs libuv) -lz -lssl -lcrypto

bench-servers: build node_modules/.installed build/loadgen
	@test -x benchmarks/.venv-wsuv/bin/python || $(PYTHON) -m venv benchmarks/.venv-wsuv
	@benchmarks/.venv-wsuv/bin/pip install -q --upgrade setuptools wheel cffi uvloop
	benchmarks/.venv-wsuv/bin/pip install -q --no-build-isolation --force-reinstall --no-deps .
	@test -x benchmarks/.venv/bin/python || $(PYTHON) -m venv benchmarks/.venv
	@cmp -s benchmarks/requirements-peers.txt benchmarks/.venv/.requirements || { \
	  benchmarks/.venv/bin/pip install -q --upgrade pip && \
	  benchmarks/.venv/bin/pip install -q -r benchmarks/requirements-peers.txt && \
	  { benchmarks/.venv/bin/pip install -q socketify || echo "socketify did not install: it will be skipped"; } && \
	  cp benchmarks/requirements-peers.txt benchmarks/.venv/.requirements; }
	$(PY) benchmarks/bench_servers.py $(ARGS)

# Publish fan-out per server CPU-second (1 topic x 1,000; 100 topics x 10), under
# --workers N too, against socketify's uWS publish and Python loops (websockets,
# aiohttp, picows); two nodes on a redis-server it starts (needs redis-server and
# redis-cli on PATH); memory per subscription. The peers come from benchmarks/.venv (made by bench-servers, which
# `make bench` runs first); writes benchmarks/RESULTS-pubsub.md.
# Options: make bench-pubsub PUBSUB_ARGS="--quick --servers wsuv,wsuv-w2"
.PHONY: bench-pubsub
bench-pubsub: build build/loadgen
	$(PY) benchmarks/bench_pubsub.py $(PUBSUB_ARGS)

# wsuv's clients (callback, sync, asyncio/uvloop) against websocket-client, websockets
# (sync, asyncio), picows and aiohttp, against one C echo server in another process;
# messages per client CPU-second. Writes benchmarks/CLIENT_RESULTS.md.
# Options: make bench-clients ARGS="--quick --clients wsuv-callback,picows-uvloop --scenarios rr64"
bench-clients: build
	@test -x benchmarks/.venv/bin/python || $(PYTHON) -m venv benchmarks/.venv
	@cmp -s benchmarks/requirements-peers.txt benchmarks/.venv/.requirements || { \
	  benchmarks/.venv/bin/pip install -q --upgrade pip && \
	  benchmarks/.venv/bin/pip install -q -r benchmarks/requirements-peers.txt && \
	  { benchmarks/.venv/bin/pip install -q socketify || echo "socketify did not install: it will be skipped"; } && \
	  cp benchmarks/requirements-peers.txt benchmarks/.venv/.requirements; }
	$(PY) benchmarks/bench_clients.py $(ARGS)

# ---- Fuzzing (fuzz/) and the valgrind run of the C engine (tests/c/) ----
# `make fuzz` replays fuzz/regressions/, then runs every libFuzzer harness and
# the atheris harness for FUZZ_SECONDS each (as many at once as CPUs);
# `make fuzz-ci` does the same for 20 s each. `make memcheck` runs
# tests/c/engine_stress.c (STRESS_CONNS simulated connections) under valgrind.
FUZZ_SECONDS ?= 60
FUZZ_CC ?= clang
FUZZ_CFLAGS ?= -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -Icsrc
FUZZ_APT_PKGS ?= clang libclang-rt-14-dev
FUZZ_COMMON := fuzz/fuzz_common.h fuzz/ref_ws.h
FUZZ_BINS := build/fuzz/fuzz_frame_parser build/fuzz/fuzz_utf8 build/fuzz/fuzz_handshake build/fuzz/fuzz_wsconn \
  build/fuzz/fuzz_pmdeflate build/fuzz/fuzz_clienths build/fuzz/fuzz_topics build/fuzz/fuzz_envelope build/fuzz/fuzz_tls \
  build/fuzz/fuzz_busproto build/fuzz/fuzz_redisseq
STRESS_CONNS ?= 10000

.PHONY: fuzz fuzz-ci fuzz-build fuzz-deps memcheck

# clang with libFuzzer (and valgrind for memcheck): installed when missing and root.
fuzz-deps: | $(VENV)/.deps
	@missing=""; command -v $(FUZZ_CC) >/dev/null 2>&1 || missing="$(FUZZ_APT_PKGS)"; \
	if [ -z "$$missing" ] && ! echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n){return 0;}' | \
	   $(FUZZ_CC) -fsanitize=fuzzer -x c - -o /dev/null >/dev/null 2>&1; then missing="$(FUZZ_APT_PKGS)"; fi; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then echo "installing: $$missing"; apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing: $$missing (run: sudo apt-get install $$missing)"; exit 1; fi; \
	fi

build/fuzz/fuzz_frame_parser: fuzz/fuzz_frame_parser.c $(FUZZ_COMMON) csrc/wsparser.c csrc/wsframe.c csrc/wsparser.h csrc/wsframe.h
	@mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ fuzz/fuzz_frame_parser.c csrc/wsparser.c csrc/wsframe.c

build/fuzz/fuzz_utf8: fuzz/fuzz_utf8.c $(FUZZ_COMMON) csrc/utf8.c csrc/utf8.h
	@mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ fuzz/fuzz_utf8.c csrc/utf8.c

build/fuzz/fuzz_handshake: fuzz/fuzz_handshake.c $(FUZZ_COMMON) csrc/handshake.c csrc/httpfields.c csrc/sha1.c csrc/handshake.h csrc/httpfields.h csrc/sha1.h
	@mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ fuzz/fuzz_handshake.c csrc/handshake.c csrc/httpfields.c csrc/sha1.c -lhttp_parser

build/fuzz/fuzz_wsconn: fuzz/fuzz_wsconn.c $(FUZZ_COMMON) csrc/wsconn.c csrc/wsparser.c csrc/wsframe.c csrc/utf8.c csrc/pmdeflate.c csrc/wsconn.h csrc/wsparser.h csrc/wsframe.h csrc/utf8.h csrc/pmdeflate.h
	@mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ fuzz/fuzz_wsconn.c csrc/wsconn.c csrc/wsparser.c csrc/wsframe.c csrc/utf8.c csrc/pmdeflate.c -lz

build/fuzz/fuzz_pmdeflate: fuzz/fuzz_pmdeflate.c $(FUZZ_COMMON) csrc/pmdeflate.c csrc/wsconn.c csrc/wsparser.c csrc/wsframe.c csrc/utf8.c csrc/pmdeflate.h csrc/wsconn.h csrc/wsparser.h csrc/wsframe.h csrc/utf8.h
	@mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ fuzz/fuzz_pmdeflate.c csrc/pmdeflate.c csrc/wsconn.c csrc/wsparser.c csrc/wsframe.c csrc/utf8.c -lz

build/fuzz/fuzz_clienths: fuzz/fuzz_clienths.c $(FUZZ_COMMON) csrc/clienths.c csrc/handshake.c csrc/httpfields.c csrc/sha1.c csrc/clienths.h csrc/handshake.h csrc/httpfields.h csrc/sha1.h
	@mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ fuzz/fuzz_clienths.c csrc/clienths.c csrc/handshake.c csrc/httpfields.c csrc/sha1.c -lhttp_parser

build/fuzz/fuzz_topics: fuzz/fuzz_topics.c $(FUZZ_COMMON) csrc/topics.c csrc/topics.h
	@mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ fuzz/fuzz_topics.c csrc/topics.c

build/fuzz/fuzz_envelope: fuzz/fuzz_envelope.c $(FUZZ_COMMON) csrc/redisproto.c csrc/redisproto.h
	@mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ fuzz/fuzz_envelope.c csrc/redisproto.c

build/fuzz/fuzz_redisseq: fuzz/fuzz_redisseq.c $(FUZZ_COMMON) csrc/redisseq.c csrc/redisseq.h csrc/topics.c csrc/topics.h
	@mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ fuzz/fuzz_redisseq.c csrc/redisseq.c csrc/topics.c

build/fuzz/fuzz_tls: fuzz/fuzz_tls.c $(FUZZ_COMMON) csrc/tls.c csrc/tls.h
	@mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ fuzz/fuzz_tls.c csrc/tls.c -lssl -lcrypto

build/fuzz/fuzz_busproto: fuzz/fuzz_busproto.c $(FUZZ_COMMON) csrc/busproto.c csrc/busproto.h
	@mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ fuzz/fuzz_busproto.c csrc/busproto.c

$(FUZZ_BINS): | fuzz-deps

$(VENV)/.atheris: $(VENV)/.installed
	$(PY) -m pip install -q atheris
	@touch $@

fuzz-build: $(FUZZ_BINS) build $(VENV)/.atheris

fuzz: fuzz-build
	FUZZ_PYTHON=$(PY) bash fuzz/run.sh $(FUZZ_SECONDS)

fuzz-ci: fuzz-build
	FUZZ_PYTHON=$(PY) bash fuzz/run.sh 20

# The sans-I/O layers only: no libuv transport, no C-application loader.
ENGINE_SRCS := $(addprefix csrc/,sha1.c utf8.c wsframe.c wsparser.c collect.c httpfields.c handshake.c \
  pmdeflate.c wsconn.c)
build/tests/engine_stress: tests/c/engine_stress.c $(ENGINE_SRCS) $(wildcard csrc/*.h)
	@mkdir -p build/tests
	$(CC) -std=c11 -g -O1 -Wall -Wextra -Icsrc -o $@ tests/c/engine_stress.c $(ENGINE_SRCS) -lhttp_parser -lz

# The Redis bridge's test driver (tests/redis/test_bridge.py runs it against
# redis-server instances of its own).
REDIS_TEST_SRC := tests/c/redis_bridge_test.c csrc/redisbridge.c csrc/redisproto.c csrc/redisseq.c csrc/topics.c
build/tests/redis_bridge_test: $(REDIS_TEST_SRC) csrc/redisbridge.h csrc/redisproto.h csrc/redisseq.h csrc/topics.h
	@mkdir -p build/tests
	$(CC) -std=c11 -D_GNU_SOURCE -g -O1 -Wall -Wextra -Werror -Icsrc -o $@ $(REDIS_TEST_SRC) \
	  $$(pkg-config --cflags --libs libuv) -lhiredis

# The same scenarios against an ASan+UBSan(+LSan) build of the driver.
build/tests/redis_bridge_test_asan: $(REDIS_TEST_SRC) csrc/redisbridge.h csrc/redisproto.h csrc/redisseq.h csrc/topics.h
	@mkdir -p build/tests
	$(CC) -std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
	  -fno-sanitize-recover=undefined -Wall -Wextra -Werror -Icsrc -o $@ $(REDIS_TEST_SRC) \
	  $$(pkg-config --cflags --libs libuv) -lhiredis

.PHONY: redis-asan
redis-asan: build build/tests/redis_bridge_test_asan
	WSUV_REDIS_DRIVER=$(CURDIR)/build/tests/redis_bridge_test_asan ASAN_OPTIONS=detect_leaks=1 \
	  $(PY) -m pytest -q -p no:cacheprovider tests/redis -k "not valgrind"

# The transport's files (server_int.h says which job each has).
TRANSPORT_C := server.c srv_write.c srv_read.c srv_conn.c srv_timer.c srv_listen.c fanout.c loop.c \
  srv_tls.c client_direct.c
# The transport with client connections dialling their own server (libuv, all of csrc/ but
# the C-application loader).
CLIENT_LOOP_SRCS := $(ENGINE_SRCS) $(addprefix csrc/,clienths.c csprng.c $(TRANSPORT_C) client.c \
  pubsub.c topics.c redisbridge.c redisproto.c redisseq.c tls.c busproto.c workerbus.c bushub.c)
build/tests/client_loop: tests/c/client_loop.c $(CLIENT_LOOP_SRCS) $(wildcard csrc/*.h)
	@mkdir -p build/tests
	$(CC) -std=c11 -g -O1 -Wall -Wextra -Werror -D_GNU_SOURCE -Icsrc $$(pkg-config --cflags libuv) \
	  -o $@ tests/c/client_loop.c $(CLIENT_LOOP_SRCS) $$(pkg-config --libs libuv) -lhttp_parser -lz -lhiredis -lssl -lcrypto -ldl

# Several servers and client connections on one ws_loop (loop.h).
build/tests/shared_loop: tests/c/shared_loop.c $(CLIENT_LOOP_SRCS) $(wildcard csrc/*.h)
	@mkdir -p build/tests
	$(CC) -std=c11 -g -O1 -Wall -Wextra -Werror -D_GNU_SOURCE -Icsrc $$(pkg-config --cflags libuv) \
	  -o $@ tests/c/shared_loop.c $(CLIENT_LOOP_SRCS) $$(pkg-config --libs libuv) -lhttp_parser -lz -lhiredis \
	  -lssl -lcrypto -ldl

# The same under ASan+UBSan (LeakSanitizer included).
build/tests/shared_loop_asan: tests/c/shared_loop.c $(CLIENT_LOOP_SRCS) $(wildcard csrc/*.h)
	@mkdir -p build/tests
	$(CC) -std=c11 -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
	  -fno-sanitize-recover=undefined -Wall -Wextra -Werror -D_GNU_SOURCE -Icsrc $$(pkg-config --cflags libuv) \
	  -o $@ tests/c/shared_loop.c $(CLIENT_LOOP_SRCS) $$(pkg-config --libs libuv) -lhttp_parser -lz -lhiredis \
	  -lssl -lcrypto -ldl

# The worker bus end to end: a hub (the program exec'd again) and two links.
BUS_LOOP_SRCS := $(addprefix csrc/,busproto.c workerbus.c bushub.c topics.c)
build/tests/bus_loop: tests/c/bus_loop.c $(BUS_LOOP_SRCS) $(wildcard csrc/*.h)
	@mkdir -p build/tests
	$(CC) -std=c11 -g -O1 -Wall -Wextra -Werror -D_GNU_SOURCE -Icsrc $$(pkg-config --cflags libuv) \
	  -o $@ tests/c/bus_loop.c $(BUS_LOOP_SRCS) $$(pkg-config --libs libuv)

memcheck: build/tests/engine_stress build/tests/client_loop build/tests/shared_loop \
  build/tests/bus_loop | $(VENV)/.deps
	@command -v valgrind >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null; } || \
	  { echo "missing: valgrind (run: sudo apt-get install valgrind)"; exit 1; }
	valgrind -q --leak-check=full --show-leak-kinds=all --errors-for-leak-kinds=all --error-exitcode=1 \
	  ./build/tests/engine_stress $(STRESS_CONNS)
	valgrind -q --leak-check=full --show-leak-kinds=all --errors-for-leak-kinds=all --error-exitcode=1 \
	  ./build/tests/client_loop
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
	  -addext subjectAltName=DNS:localhost,DNS:two.test,IP:127.0.0.1 \
	  -keyout build/tests/client_loop.key -out build/tests/client_loop.pem 2>/dev/null
	valgrind -q --leak-check=full --show-leak-kinds=all --errors-for-leak-kinds=all --error-exitcode=1 \
	  ./build/tests/client_loop build/tests/client_loop.pem build/tests/client_loop.key
	valgrind -q --leak-check=full --show-leak-kinds=all --errors-for-leak-kinds=all --error-exitcode=1 \
	  ./build/tests/shared_loop
	valgrind -q --trace-children=yes --leak-check=full --show-leak-kinds=all --errors-for-leak-kinds=all \
	  --error-exitcode=1 ./build/tests/bus_loop
