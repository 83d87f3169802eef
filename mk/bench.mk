# `make bench` / `make bench-smoke` (issue 7). Included from the main Makefile,
# which defines build, envoy, targets, ENVOY and WASM. Driver: bench/run.py.
#
#   make bench        3 interleaved rounds of 5 s per row, criterion benches,
#                     writes BENCHMARKS.md (BENCH_SECONDS/BENCH_ROUNDS/BENCH_ROWS tune it)
#   make bench-smoke  1 round of 1 s per row, checks the harness works, never
#                     asserts on timing; writes target/bench/BENCHMARKS.smoke.md

BENCH_NOOP_WASM := target/wasm32-wasip1/release/bench_noop_filter.wasm
BENCH_LOAD      := target/release/rollout-bench-load
# Row (c-o3): the filter built for speed (opt-level 3, no wasm-opt), to price the size profile.
BENCH_SPEED_WASM := target/wasm32-wasip1/release/rollout_filter.wasm
# The filter's pure per-request work as wasm, built both ways and timed in Node's V8.
CORE_WASM_O3      := target/wasm32-unknown-unknown/release/bench_core_wasm.wasm
CORE_WASM_SHIPPED := target/bench/bench_core_wasm.shipped.wasm
BENCH_ENV        = ENVOY="$(ENVOY)" WASM="$(WASM)" RAW_WASM="$(WASM_RAW)" NOOP_WASM="$(BENCH_NOOP_WASM)" \
                   BENCH_LOAD="$(BENCH_LOAD)" SPEED_WASM="$(BENCH_SPEED_WASM)"

.PHONY: bench bench-smoke bench-tools bench-speed-wasm

# The no-op baseline filter (row b) and the mTLS load client.
bench-tools: targets
	cargo build --release --target wasm32-wasip1 -p bench-noop-filter
	cargo build --release -p rollout-bench-load

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

# `make test` runs the smoke so the harness cannot rot (timing is never asserted).
test: bench-smoke
