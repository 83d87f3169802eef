# cargo-fuzz targets of the pure parsers (fuzz/README.md). Included by the Makefile.
#   make fuzz         every target for FUZZ_SECONDS (default 120) each; prints executions per target
#   make fuzz-smoke   every target for FUZZ_SMOKE_SECONDS (default 5) each; part of `make test`
#   make fuzz-cmin    shrink the grown corpus (FUZZ_WORK/corpus) to the inputs that add coverage
#   make fuzz-regressions  every file of fuzz/regressions/<target>/ and fuzz/artifacts/<target>/
#                     run once through its target; part of fuzz-smoke
# One target only: make fuzz FUZZ_TARGETS=trace FUZZ_SECONDS=600
# The seed corpus (fuzz/corpus/<target>/) and the regression inputs (fuzz/regressions/<target>/)
# are only read; what the fuzzer finds goes to FUZZ_WORK (gitignored), crashes to fuzz/artifacts/.

FUZZ_TARGETS       ?= config trace certificate keys headers decision lane rollouts sync
FUZZ_SECONDS       ?= 120
FUZZ_SMOKE_SECONDS ?= 5
# The pinned nightly (cargo-fuzz needs one): a dated toolchain, so a new nightly cannot break
# the build or change what the targets find. Move it forward here, and only here.
FUZZ_TOOLCHAIN     ?= nightly-2026-05-20
# Safe Rust: no sanitizer (2-3x the executions of ASan); debug assertions keep overflow checks on.
FUZZ_SANITIZER     ?= none
FUZZ_BUILD_FLAGS   := --sanitizer $(FUZZ_SANITIZER) --debug-assertions
FUZZ_WORK          ?= fuzz/work
# Extra libFuzzer flags, e.g. FUZZ_ARGS=-max_len=20000
FUZZ_ARGS          ?=
FUZZ_CARGO         := cargo +$(FUZZ_TOOLCHAIN) fuzz

.PHONY: fuzz fuzz-smoke fuzz-cmin fuzz-build fuzz-tools fuzz-regressions

fuzz-tools:
	@rustup toolchain list | grep -q '^$(FUZZ_TOOLCHAIN)-' || rustup toolchain install $(FUZZ_TOOLCHAIN) --profile minimal
	@cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked

fuzz-build: fuzz-tools
	@start=$$(date +%s); $(FUZZ_CARGO) build $(FUZZ_BUILD_FLAGS) || exit 1; \
	  echo "fuzz targets built in $$(( $$(date +%s) - start )) s"

# fuzz-run SECONDS,CORPUS,tally: run every target in turn with CORPUS/<target> as the working
# corpus, print one line per target, fail if any crashed. With `tally`, executions are added up
# per target in $(FUZZ_WORK)/executions.tsv.
define fuzz-run
	@mkdir -p $(FUZZ_WORK)/logs; failed=; \
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(2)/$$t; \
	  log=$(FUZZ_WORK)/logs/$$t.log; \
	  seeds=fuzz/corpus/$$t; [ -d fuzz/regressions/$$t ] && seeds="$$seeds fuzz/regressions/$$t"; \
	  $(FUZZ_CARGO) run $(FUZZ_BUILD_FLAGS) $$t $(2)/$$t $$seeds -- \
	    -max_total_time=$(1) -print_final_stats=1 $(FUZZ_ARGS) >$$log 2>&1; rc=$$?; \
	  execs=$$(awk '/^stat::number_of_executed_units:/ {print $$2}' $$log | tail -1); \
	  rate=$$(awk '/^stat::average_exec_per_sec:/ {print $$2}' $$log | tail -1); \
	  units=$$(ls $(2)/$$t | wc -l); \
	  total=; if [ "$(3)" = tally ] && [ -n "$$execs" ]; then \
	    printf '%s\t%s\t%s\n' "$$(date -u +%FT%TZ)" $$t $$execs >>$(FUZZ_WORK)/executions.tsv; \
	    total=", $$(awk -v t=$$t '$$2 == t {s += $$3} END {print s}' $(FUZZ_WORK)/executions.tsv) in all runs"; fi; \
	  if [ $$rc -eq 0 ]; then status=ok; else status="FAILED (exit $$rc, see $$log)"; failed="$$failed $$t"; fi; \
	  printf 'fuzz %-12s %12s executions (%s/s%s), %s units in %s: %s\n' \
	    $$t "$${execs:-?}" "$${rate:-?}" "$$total" $$units $(2)/$$t "$$status"; \
	  [ $$rc -eq 0 ] || grep -A1 -E 'panicked at|^(thread|assertion)|  left:|  right:|Test unit written to|SUMMARY' $$log | head -12 | sed 's/^/    /'; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: crashed:$$failed"; exit 1; fi
endef

# The grown corpus persists between runs, so coverage accumulates.
fuzz: fuzz-build ## each fuzz target for FUZZ_SECONDS (default 120); FUZZ_TARGETS=... picks some
	$(call fuzz-run,$(FUZZ_SECONDS),$(FUZZ_WORK)/corpus,tally)

# Each target runs the files given by name once and exits; the first that fails stops it. A
# target with no regression seed fails too: each keeps one (fuzz/README.md).
fuzz-regressions: fuzz-build ## replay each fuzz target's regression seeds and saved crashes
	@mkdir -p $(FUZZ_WORK)/logs; failed=; \
	for t in $(FUZZ_TARGETS); do \
	  log=$(FUZZ_WORK)/logs/$$t.replay.log; \
	  seeds=$$(find fuzz/regressions/$$t -type f 2>/dev/null | sort); \
	  crashes=$$(find fuzz/artifacts/$$t -type f 2>/dev/null | sort); \
	  if [ -z "$$seeds" ]; then echo "fuzz-regressions $$t: no seed in fuzz/regressions/$$t"; failed="$$failed $$t"; continue; fi; \
	  $(FUZZ_CARGO) run $(FUZZ_BUILD_FLAGS) $$t $$seeds $$crashes -- -runs=1 >$$log 2>&1; rc=$$?; \
	  ran=$$(grep -c '^Executed ' $$log); \
	  if [ $$rc -eq 0 ]; then status=ok; else status="FAILED (exit $$rc, see $$log)"; failed="$$failed $$t"; fi; \
	  printf 'fuzz-regressions %-12s %2s seeds, %2s saved crashes, %2s run: %s\n' $$t \
	    $$(echo $$seeds | wc -w) $$(echo $$crashes | wc -w) $$ran "$$status"; \
	  [ $$rc -eq 0 ] || grep -E 'Running: |panicked at|  left:|  right:|SUMMARY' $$log | head -8 | sed 's/^/    /'; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz-regressions: failed:$$failed"; exit 1; fi

# A fresh corpus each time: the regressions and saved crashes replayed one by one, the seeds
# and regressions as the starting corpus, then a few seconds of fuzzing, so `make test` takes
# the same time however big the grown corpus is.
fuzz-smoke: fuzz-regressions ## each fuzz target for a few seconds, after the replay (part of make test)
	@rm -rf $(FUZZ_WORK)/smoke
	$(call fuzz-run,$(FUZZ_SMOKE_SECONDS),$(FUZZ_WORK)/smoke)

# Shrink the grown corpus to the inputs that add coverage.
fuzz-cmin: fuzz-build ## shrink the grown fuzz corpus
	@for t in $(FUZZ_TARGETS); do [ -d $(FUZZ_WORK)/corpus/$$t ] || continue; \
	  before=$$(ls $(FUZZ_WORK)/corpus/$$t | wc -l); \
	  $(FUZZ_CARGO) cmin $(FUZZ_BUILD_FLAGS) $$t $(FUZZ_WORK)/corpus/$$t >$(FUZZ_WORK)/logs/$$t.cmin.log 2>&1 || exit 1; \
	  echo "fuzz-cmin $$t: $$before -> $$(ls $(FUZZ_WORK)/corpus/$$t | wc -l) units"; done

# `make test` runs the smoke so the targets keep building and their invariants keep holding.
test: fuzz-smoke
