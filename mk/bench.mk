# `make bench` / `make bench-smoke` (issue 7). Included from the main Makefile,
# which defines build, envoy, targets, ENVOY and WASM. Driver: bench/run.py.
#
#   make bench        3 interleaved rounds of 5 s per row, criterion benches,
#                     writes BENCHMARKS.md (BENCH_SECONDS/BENCH_ROUNDS/BENCH_ROWS tune it)
#                     (refuses on a busy machine: 1-minute load > 1.5; BENCH_FORCE=1 overrides)
#   make bench-smoke  1 round of 1 s per row, checks the harness works, never
#                     asserts on timing; writes target/bench/BENCHMARKS.smoke.md
#   make bench-instructions  instructions per request under callgrind (issue 26), rows
#                     (b) (c) (f) (e) (e-f) (h-seq_c) (h-seq_f) x 2 runs; writes
#                     bench/instructions.json and its section of BENCHMARKS.md.
#                     Driver: bench/instructions.py (rows shared with run.py: bench/rows.py)
#   make instructions-check  the regression guard `make test` runs: (c) and (f),
#                     300 requests each, against bench/instructions.json (+3 % allowed)

BENCH_NOOP_WASM := target/wasm32-wasip1/release/bench_noop_filter.wasm
BENCH_LOAD      := target/release/rollout-bench-load
# Row (c-o3): the filter built for speed (opt-level 3, no wasm-opt), to price the size profile.
BENCH_SPEED_WASM := target/wasm32-wasip1/release/rollout_filter.wasm
# The filter's pure per-request work as wasm, built both ways and timed in Node's V8.
CORE_WASM_O3      := target/wasm32-unknown-unknown/release/bench_core_wasm.wasm
CORE_WASM_SHIPPED := target/bench/bench_core_wasm.shipped.wasm
BENCH_ENV        = ENVOY="$(ENVOY)" WASM="$(WASM)" RAW_WASM="$(WASM_RAW)" NOOP_WASM="$(BENCH_NOOP_WASM)" \
                   BENCH_LOAD="$(BENCH_LOAD)" SPEED_WASM="$(BENCH_SPEED_WASM)"

.PHONY: bench bench-smoke bench-tools bench-noop bench-speed-wasm bench-instructions instructions-check valgrind

# The no-op baseline filter (row b) and the mTLS load client.
bench-tools: bench-noop
	cargo build --release -p rollout-bench-load

bench-noop: targets
	cargo build --release --target wasm32-wasip1 -p bench-noop-filter

bench-speed-wasm: targets binaryen
	cargo build --release --target wasm32-wasip1 -p rollout-filter
	cargo build --release --target wasm32-unknown-unknown -p bench-core-wasm
	cargo build --profile filter --target wasm32-unknown-unknown -p bench-core-wasm
	@mkdir -p target/bench
	$(WASM_OPT) target/wasm32-unknown-unknown/filter/bench_core_wasm.wasm -o $(CORE_WASM_SHIPPED)

bench: build envoy bench-tools bench-speed-wasm ## the benchmark: writes BENCHMARKS.md (BENCH_SECONDS, BENCH_ROUNDS, BENCH_ROWS)
	$(BENCH_ENV) CORE_WASM_O3="$(CORE_WASM_O3)" CORE_WASM_SHIPPED="$(CORE_WASM_SHIPPED)" python3 bench/run.py

bench-smoke: build envoy bench-tools ## one short round of every benchmark row, to check the harness (no timing asserted)
	$(BENCH_ENV) python3 bench/run.py --smoke

# Valgrind (callgrind, callgrind_control, callgrind_annotate) from Debian's valgrind package.
valgrind:
	@command -v callgrind_control >/dev/null || { command -v apt-get >/dev/null && \
	  sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ) && $$sudo apt-get update -q && \
	  $$sudo apt-get install -y -q valgrind; } || \
	  { echo "valgrind not found: install it (Debian/Ubuntu: apt-get install valgrind)"; exit 1; }

bench-instructions: build envoy bench-noop valgrind ## instructions per request under callgrind: writes bench/instructions.json
	$(BENCH_ENV) python3 bench/instructions.py

# Only the rollout-filter rows: no no-op filter needed.
instructions-check: build envoy valgrind ## the instruction-count guard (part of make test): (c) and (f) against bench/instructions.json
	$(BENCH_ENV) python3 bench/instructions.py --check

# `make test` runs the smoke so the harness cannot rot (timing is never asserted), and the
# instruction-count guard, which does assert: instructions do not move with the machine's load.
test: bench-smoke instructions-check
