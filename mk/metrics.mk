# Metrics (issue 5): `make report` and the Prometheus e2e. Included from the main Makefile, which
# defines the `build` and `envoy` targets. docs/metrics.md explains the metrics and the report.
#
#   make report                         per-version table + verdict from the demo Envoy (127.0.0.1:18900)
#   make report REPORT_ARGS="--min-success 99 --max-p99-ms 250 --min-requests 500 --window 60s"
#   make report REPORT_ADMIN=127.0.0.1:15000   any other Envoy admin, e.g. an Istio gateway pod's
#                                       through `kubectl -n istio-system port-forward <pod> 15000`
#   make watch                          the demo Envoy, steady traffic and the report's page
#                                       (rollout-report --serve) at WATCH_ADDR; docs/watching.md
#   make metrics-test                   every shipped PromQL query (istio/analysis.yaml,
#                                       istio/flagger-metrics.yaml, istio/grafana-dashboard.json)
#                                       against a real Prometheus scraping a real Envoy, and the
#                                       report against a failing and a healthy canary, and
#                                       `--prometheus` over two Envoys (report_fleet)
#
# `make report` needs a running Envoy: `make run` stops its own at the end, so for a standing one
# run `.venv/bin/envoy -c envoy-config/envoy.yaml --concurrency 1 --use-dynamic-base-id` from the
# repository root. rollout-report exits 0 promote, 1 hold, 2 abort, 3 no report; make turns every
# failure into its own exit 2, so `make report` prints the report's code and a pipeline gates on
# the CLI itself (target/debug/rollout-report, or `cargo install --path cli`).

REPORT_ADMIN ?= 127.0.0.1:18900
REPORT_ARGS  ?= --min-success 99.9 --max-p99-ms 300 --min-requests 100
PROMETHEUS   ?= /usr/bin/prometheus
# rollout-demo (`make run`) passes REPORT_ARGS to the report it prints; the tests read PROMETHEUS.
export REPORT_ARGS PROMETHEUS

WATCH_ADDR   ?= 127.0.0.1:8080
export WATCH_ADDR

.PHONY: report watch metrics-test prometheus-check

report: ## per-version table and verdict from an Envoy admin (REPORT_ADMIN, REPORT_ARGS)
	@cargo build --quiet -p rollout-cli --bin rollout-report
	@target/debug/rollout-report --admin $(REPORT_ADMIN) $(REPORT_ARGS); rc=$$?; \
	  case $$rc in 0) exit 0;; 1) v=HOLD;; 2) v=ABORT;; *) v="no report";; esac; \
	  echo "rollout-report exit code $$rc ($$v); make reports any failure as its exit 2:" \
	    "to gate on the code, run target/debug/rollout-report $(strip --admin $(REPORT_ADMIN) $(REPORT_ARGS))" >&2; \
	  exit $$rc

# The demo Envoy, steady demo traffic and the report's page on it (docs/watching.md); Ctrl-C
# stops Envoy, the traffic and the page together.
watch: build envoy ## the demo Envoy with steady traffic and the report's page (WATCH_ADDR, REPORT_ARGS); Ctrl-C stops
	cargo run --quiet -p rollout-cli --bin rollout-watch

# Debian's Prometheus server (.ci/run installs the package; it never starts itself).
prometheus-check:
	@test -x "$(PROMETHEUS)" || { echo "no Prometheus at $(PROMETHEUS): apt-get install -y prometheus" \
	  "(or PROMETHEUS=/path/to/prometheus)"; exit 1; }
	@"$(PROMETHEUS)" --version 2>&1 | head -1

metrics-test: build envoy prometheus-check ## every shipped PromQL query against a real Prometheus scraping a real Envoy
	cargo test -p rollout-e2e --test prometheus --test report --test report_fleet -- --test-threads 2
