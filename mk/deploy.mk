# Deploy artifacts: Istio manifests (istio/), the OCI image, the Istio-equivalent Envoy config
# (envoy-config/istio-ecds.yaml + envoy-config/ecds/). Included from the main Makefile, which defines
# VENV, ENVOY, WASM and the `build` and `envoy` targets.
#
#   make oci           build target/oci (OCI image layout) + target/rollout-filter-oci.tar, print the
#                      manifest digest and the sha256 for the WasmPlugins, render every
#                      istio/**/wasmplugin.yaml with it filled in under target/deploy/istio/
#                      (OCI_URL=oci://REGISTRY/REPO:TAG: with that image url); no tracked file changes
#   make deploy-test   manifests strictly valid (incl. typo'd fixtures that must fail), the route
#                      fixtures up to date with them (tools/istio_routes.py, tools/gateway_routes.py), the OCI image
#                      unpacked and its layer compared with the .wasm, the Istio-shaped Envoy config
#                      checked against the WasmPlugin and loaded by `envoy --mode validate`, every
#                      shipped filter config through rollout-check-config (`make check-configs`)
# The hot-reload and Istio-config e2e tests are tests/tests/deploy.rs (`make e2e`).

DEPLOY_PY      := $(VENV)/bin/python
DEPLOY_STAMP   := $(VENV)/.deploy-requirements.stamp
DEPLOY_NODE    := tools/node_modules/.package-lock.json
OCI_DIR        := target/oci
OCI_TAR        := target/rollout-filter-oci.tar
DEPLOY_OUT     := target/deploy
CHECK_CONFIG   := target/debug/rollout-check-config

.PHONY: oci deploy-tools deploy-test manifests-test oci-test ecds-test check-config-bin istio-flagd
.PHONY: check-configs

# Python packages (pinned, with dependencies) into the project venv.
$(DEPLOY_STAMP): tools/requirements.txt
	@test -x $(DEPLOY_PY) || python3 -m venv $(VENV)
	$(DEPLOY_PY) -m pip install --quiet --disable-pip-version-check -r tools/requirements.txt
	@touch $@

# npm packages (exact versions from the committed package-lock.json) into tools/node_modules.
$(DEPLOY_NODE): tools/package.json tools/package-lock.json
	cd tools && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

deploy-tools: $(DEPLOY_STAMP) $(DEPLOY_NODE)

# istio/flagd/wasmplugin.yaml and sync.yaml from the FeatureFlag (istio/flagd/featureflag.yaml): the flag lives once.
istio-flagd: $(DEPLOY_STAMP) ## render istio/flagd/wasmplugin.yaml and sync.yaml from istio/flagd/featureflag.yaml
	$(DEPLOY_PY) tools/render_flagd_wasmplugin.py

# The filter's own config parser, to vet every shipped pluginConfig.
check-config-bin:
	cargo build --quiet -p rollout-cli --bin rollout-check-config

# Every shipped filter config through rollout-check-config as a user runs it: each WasmPlugin
# and EnvoyExtensionPolicy (found by its kind, at any depth), each Envoy config and ECDS resource.
SHIPPED_PLUGINS = $(shell grep -rlE --include='*.yaml' '^kind: (WasmPlugin|EnvoyExtensionPolicy)' istio envoy-gateway | sort)
check-configs: check-config-bin ## every shipped WasmPlugin, EnvoyExtensionPolicy, Envoy config, ECDS resource through rollout-check-config
	$(CHECK_CONFIG) $(SHIPPED_PLUGINS) $(sort $(wildcard envoy-config/*.yaml envoy-config/ecds/*.yaml))

# OCI_URL=oci://REGISTRY/REPO:TAG: the image url the rendered WasmPlugins name (else the shipped one).
OCI_URL ?=
OCI_URL_ARG = $(if $(strip $(OCI_URL)),--url $(OCI_URL))

oci: build ## OCI image in target/oci + tar, WasmPlugins with URL and digest under target/deploy (OCI_URL=oci://...)
	python3 tools/oci_image.py --wasm $(WASM) --out $(OCI_DIR) --tar $(OCI_TAR) --render $(DEPLOY_OUT) $(OCI_URL_ARG)

manifests-test: deploy-tools check-config-bin ## every Istio manifest strictly validated, broken ones must fail
	$(DEPLOY_PY) tools/validate_manifests.py --check-config $(CHECK_CONFIG) \
	  istio/ istio/file/ istio/route-weights/ istio/flagger/ istio/gateway-multi/ istio/flagd/ \
	  istio/gateway-api/ istio/gateway-api/argo/ istio/gateway-api/flagger/ \
	  envoy-gateway/ envoy-gateway/argo/ envoy-gateway/flagger/ \
	  tools/testdata/valid/
	@echo "--- istio/flagd/wasmplugin.yaml and sync.yaml carry istio/flagd/featureflag.yaml's flagSpec:"
	$(DEPLOY_PY) tools/render_flagd_wasmplugin.py --check
	@echo "--- the gateway routes istiod renders for them (tests/tests/istio_rollout.rs loads these):"
	$(DEPLOY_PY) tools/istio_routes.py --check tests/fixtures/istio-routes
	@echo "--- the Gateway API routes Istio and Envoy Gateway render (tests/tests/gateway_api_rollout.rs):"
	$(DEPLOY_PY) tools/gateway_routes.py --check tests/fixtures/gateway-api-routes
	@echo "--- typo'd and otherwise broken manifests must be rejected:"
	$(DEPLOY_PY) tools/validate_manifests.py --check-config $(CHECK_CONFIG) --expect-invalid \
	  tools/testdata/invalid/

oci-test: oci deploy-tools check-config-bin ## the OCI image unpacked as Istio does; its layer is the built .wasm
	python3 tools/check_oci.py --tar $(OCI_TAR) --dir $(OCI_DIR) --wasm $(WASM) --rendered $(DEPLOY_OUT) $(OCI_URL_ARG)
	$(DEPLOY_PY) tools/validate_manifests.py --check-config $(CHECK_CONFIG) \
	  $(DEPLOY_OUT)/istio/wasmplugin.yaml $(DEPLOY_OUT)/istio/file/wasmplugin.yaml \
	  $(DEPLOY_OUT)/istio/route-weights/wasmplugin.yaml $(DEPLOY_OUT)/istio/flagger/wasmplugin.yaml \
	  $(DEPLOY_OUT)/istio/gateway-multi/wasmplugin.yaml $(DEPLOY_OUT)/istio/flagd/wasmplugin.yaml \
	  $(DEPLOY_OUT)/istio/gateway-api/argo/wasmplugin.yaml $(DEPLOY_OUT)/istio/gateway-api/flagger/wasmplugin.yaml \
	  $(DEPLOY_OUT)/envoy-gateway/argo/extension.yaml $(DEPLOY_OUT)/envoy-gateway/flagger/extension.yaml

ecds-test: build envoy deploy-tools ## the Istio-shaped Envoy config matches the WasmPlugin and loads in Envoy
	$(DEPLOY_PY) tools/ecds_check.py --envoy envoy-config/istio-ecds.yaml \
	  --wasmplugin istio/wasmplugin.yaml --static-out $(DEPLOY_OUT)/istio-ecds-static.yaml
	@for f in envoy-config/istio-ecds.yaml $(DEPLOY_OUT)/istio-ecds-static.yaml; do \
	  $(ENVOY) --mode validate -c $$f --log-level error >/dev/null || { echo "INVALID: $$f"; exit 1; }; \
	  echo "valid: $$f"; done

deploy-test: manifests-test oci-test ecds-test check-configs ## manifests-test, oci-test, ecds-test and check-configs
