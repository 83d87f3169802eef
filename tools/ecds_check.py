#!/usr/bin/env python3
"""Check the Istio-equivalent Envoy config against the WasmPlugin it stands for, and inline it.

    ecds_check.py [--envoy envoy-config/istio-ecds.yaml] [--wasmplugin istio/wasmplugin.yaml]
                  --static-out FILE

`envoy --mode validate` does not start xDS subscriptions, so it never reads the ECDS file. This
script (run from the repository root) therefore
1. checks that the ECDS-delivered filter has the shape istiod gives a WasmPlugin
   (pilot/pkg/model/wasm.go, pilot/pkg/networking/core/extension/wasmplugin.go):
   HTTP filter named extensions.istio.io/wasmplugin/<ns>.<name> with config_discovery
   (initial_fetch_timeout 0s, type URLs Wasm and RBAC); the ECDS resource of that name holding a
   Wasm PluginConfig named <ns>.<name>, root_id = pluginName, runtime V8, failure_policy mapped
   from failStrategy, and configuration = pluginConfig as JSON in a StringValue;
2. writes FILE: the same bootstrap with the ECDS resource inlined as the filter's typed_config, so
   that `envoy --mode validate -c FILE` loads the real module with that configuration (validate mode
   runs the filter's on_configure, so a config the filter rejects fails it).
Prints `N passed, 0 failed` and exits 0, or names each failed check and exits 1.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import yaml

WASM_TYPE = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
RBAC_TYPE = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
EXT_CONFIG_TYPE = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"
STRING_VALUE = "type.googleapis.com/google.protobuf.StringValue"
FAIL_POLICY = {"FAIL_OPEN": "FAIL_OPEN", "FAIL_CLOSE": "FAIL_CLOSED", "FAIL_RELOAD": "FAIL_RELOAD"}

passed = 0
failed: list[str] = []


def check(ok: bool, what: str) -> None:
    global passed
    if ok:
        passed += 1
        print(f"ok    {what}")
    else:
        failed.append(what)
        print(f"FAIL  {what}")


def hcm_filters(bootstrap: dict) -> list[dict]:
    for listener in bootstrap["static_resources"]["listeners"]:
        if listener["name"] != "front":
            continue
        for chain in listener["filter_chains"]:
            for f in chain["filters"]:
                if f["name"] == "envoy.filters.network.http_connection_manager":
                    return f["typed_config"]["http_filters"]
    raise SystemExit("no HTTP connection manager on listener `front`")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--envoy", type=Path, default=Path("envoy-config/istio-ecds.yaml"))
    ap.add_argument("--wasmplugin", type=Path, default=Path("istio/wasmplugin.yaml"))
    ap.add_argument("--static-out", type=Path, required=True)
    args = ap.parse_args()

    bootstrap = yaml.safe_load(args.envoy.read_text())
    plugin = yaml.safe_load(args.wasmplugin.read_text())
    ns, name = plugin["metadata"]["namespace"], plugin["metadata"]["name"]
    spec = plugin["spec"]
    resource_name = f"extensions.istio.io/wasmplugin/{ns}.{name}"

    filters = hcm_filters(bootstrap)
    discovered = [f for f in filters if "config_discovery" in f]
    check(len(discovered) == 1, "one ECDS-delivered HTTP filter")
    flt = discovered[0]
    check(flt["name"] == resource_name, f"filter named {resource_name}")
    check(filters[-1]["name"] == "envoy.filters.http.router" and filters.index(flt) < len(filters) - 1,
          "the filter runs before the router")
    disc = flt["config_discovery"]
    src = disc["config_source"]
    check(src.get("initial_fetch_timeout") == "0s", "initial_fetch_timeout 0s (the listener waits for the filter)")
    check(src.get("resource_api_version") == "V3", "resource_api_version V3")
    check(disc.get("type_urls") == [WASM_TYPE, RBAC_TYPE], "type_urls: Wasm, RBAC (as istiod)")
    check("default_config" not in disc and not disc.get("apply_default_config_without_warming"),
          "no default config (as istiod)")
    path = Path(src["path_config_source"]["path"])
    check(Path(src["path_config_source"]["watched_directory"]["path"]) == path.parent,
          "watched_directory is the ECDS file's directory (atomic renames are seen)")

    ecds = yaml.safe_load(path.read_text())
    resources = ecds.get("resources", [])
    check(len(resources) == 1, f"{path} holds one resource")
    res = resources[0]
    check(res.get("@type") == EXT_CONFIG_TYPE, "resource is a TypedExtensionConfig")
    check(res.get("name") == resource_name, f"resource named {resource_name}")
    wasm = res["typed_config"]
    check(wasm.get("@type") == WASM_TYPE, "typed_config is the Wasm HTTP filter")
    cfg = wasm["config"]
    check(cfg.get("name") == f"{ns}.{name}", f"plugin name {ns}.{name}")
    check(cfg.get("root_id") == spec["pluginName"], f"root_id = pluginName ({spec['pluginName']})")
    check(cfg.get("failure_policy") == FAIL_POLICY[spec["failStrategy"]],
          f"failure_policy {cfg.get('failure_policy')} = failStrategy {spec['failStrategy']}")
    vm = cfg["vm_config"]
    check(vm.get("runtime") == "envoy.wasm.runtime.v8", "runtime V8")
    check("vm_id" not in vm, "no vm_id (istiod sets none)")
    conf = cfg["configuration"]
    check(conf.get("@type") == STRING_VALUE, "configuration is a StringValue")
    check(json.loads(conf["value"]) == spec["pluginConfig"], "configuration JSON = WasmPlugin pluginConfig")
    check(conf["value"] == json.dumps(json.loads(conf["value"]), separators=(",", ":")),
          "configuration is compact JSON (as protomarshal.ToJSON)")

    static = copy.deepcopy(bootstrap)
    for i, f in enumerate(hcm_filters(static)):
        if "config_discovery" in f:
            hcm_filters(static)[i] = {"name": f["name"], "typed_config": copy.deepcopy(wasm)}
    args.static_out.parent.mkdir(parents=True, exist_ok=True)
    args.static_out.write_text(
        f"# GENERATED by tools/ecds_check.py: {args.envoy} with {path} inlined, for envoy --mode validate\n"
        + yaml.safe_dump(static, sort_keys=False)
    )
    print(f"wrote {args.static_out}")
    print(f"{passed} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
