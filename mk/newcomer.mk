# The first hour (issue 29): what a newcomer meets first keeps telling the truth. Included by the
# Makefile. The e2e side is tests/tests/first_hour.rs (demos beside other Envoys, the Envoy
# commands of the README and docs/ side by side, `make report`'s exit) and
# tests/tests/readme_figures.rs (their figures against the code and a real Envoy), both in `make e2e`.

.PHONY: writes-check docs-check

WRITES_OUT := target/writes-check

# `make oci OCI_URL=…` and the hot-reload tools change no tracked file, and the rendered
# WasmPlugins carry the url and no placeholder text.
writes-check: build ## make oci OCI_URL=… and the hot-reload tools write under target/ only
	@before=$$(git status --porcelain --untracked-files=no); url=oci://registry.example.invalid/rollout-filter:check; \
	python3 tools/oci_image.py --wasm $(WASM) --out $(WRITES_OUT)/oci --tar $(WRITES_OUT)/oci.tar \
	  --render $(WRITES_OUT)/deploy --url $$url >/dev/null || exit 1; \
	{ python3 tools/ecds_update.py --init && python3 tools/ecds_update.py --weights stable=60,canary=40 && \
	  python3 tools/rds_update.py --init && python3 tools/rds_update.py 60 40; } >/dev/null || exit 1; \
	if python3 tools/ecds_update.py --weights canary=1 --file envoy-config/ecds/rollout-filter.yaml 2>/dev/null; then \
	  echo "writes-check: ecds_update.py rewrote a tracked file"; exit 1; fi; \
	if grep -rl PLACEHOLDER $(WRITES_OUT)/deploy; then echo "writes-check: placeholder text rendered"; exit 1; fi; \
	want=$$(grep -rlE "url: oci://|type: Image" istio envoy-gateway --include=wasmplugin.yaml --include=extension.yaml | wc -l); \
	got=$$(grep -rlE "url: ($$url|$${url#oci://})$$" $(WRITES_OUT)/deploy | wc -l); \
	if [ "$$got" != "$$want" ]; then echo "writes-check: $$got of $$want manifests carry $$url"; exit 1; fi; \
	if [ "$$(git status --porcelain --untracked-files=no)" != "$$before" ]; then \
	  echo "writes-check: tracked files changed:"; git status --porcelain --untracked-files=no; exit 1; fi; \
	echo "writes-check: $$got manifests rendered with $$url, no placeholder; ECDS and RDS updates under target/; no tracked file changed"

# The docs are split over README.md and docs/: a moved section must not leave a dead link behind.
docs-check: ## every link, #anchor and repository path named in the committed Markdown exists
	@python3 tools/check_docs.py

# `make help` lists every user-facing target.
test: help-check writes-check docs-check
