#!/usr/bin/env python3
"""Validate Kubernetes manifests against their CRD schemas, strictly (like kubectl --validate=strict).

    validate_manifests.py [--check-config BIN] PATH...                  every document must be valid
    validate_manifests.py [--check-config BIN] --expect-invalid PATH... every document must be rejected,
                                                                         for the reason its file names

Schemas come from maintained model packages, pinned in tools/requirements.txt and tools/package.json:
- Istio (WasmPlugin, VirtualService, DestinationRule, Gateway): PyPI cloudcoil-models-istio (pydantic
  models generated from Istio's CRDs). It checks types, enums and patterns but ignores unknown keys, so
  after it accepts a document we walk the document next to the validated model and reject every key
  the model has no field (alias) for.
- Argo Rollouts (Rollout, AnalysisTemplate, ClusterAnalysisTemplate): npm @kubernetes-models/argo-rollouts,
  run by tools/validate_argo.mjs with the same strictness added (and the Gateway API plugin's config,
  opaque to Argo's schema, checked against the plugin's Go type there).
- Gateway API (Gateway, HTTPRoute) and core Service: npm @kubernetes-models/gateway-api and
  kubernetes-models, through the same tools/validate_argo.mjs.
- Envoy Gateway (EnvoyProxy, EnvoyPatchPolicy, EnvoyExtensionPolicy): no registry package has a schema,
  so tools/envoy_gateway_models.py models the fields used from Envoy Gateway's Go types, rejecting
  unknown keys. EnvoyProxy's bootstrap stats_tags must equal envoy-config/istio-ecds.yaml's; an
  EnvoyPatchPolicy's jsonPath must be in the subset tools/eg_jsonpatch.py evaluates (the route
  fixtures apply it); each wasm `config` goes through the filter's parser like a pluginConfig.
- Istio EnvoyFilter: the same cloudcoil models; each patch `value` (free-form in the CRD) is parsed
  into Envoy's own protobuf type for its applyTo (PyPI xds-protos), which rejects unknown fields as
  istiod's validation does. A MERGE that sets a route's weighted_clusters must name the route and
  carry a proxyVersion guard (istio/route-weights/envoyfilter.yaml says why).
- Flagger (Canary, MetricTemplate): no registry package has a schema, so tools/flagger_models.py
  models them from Flagger's Go types, rejecting unknown keys.
- ConfigMap istio/stats-bootstrap.yaml: checked here (metadata through cloudcoil's ObjectMeta, data as a
  string map) and its stats_tags compared with envoy-config/istio-ecds.yaml.
A kind without a schema here is an error, so nothing unvalidated ships silently.

With --check-config, each WasmPlugin's pluginConfig is also run through the filter's own parser
(the rollout-check-config binary), which must print "ok".

A file under --expect-invalid names the expected error in a comment line `# expect-error: <substring>`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import pydantic
import yaml
from cloudcoil import apimachinery
from cloudcoil.models.istio.extensions import v1alpha1 as istio_ext
from cloudcoil.models.istio.networking import v1 as istio_net_v1
from cloudcoil.models.istio.networking import v1alpha3 as istio_net_v1alpha3
from cloudcoil.models.istio.networking import v1beta1 as istio_net_v1beta1
from cloudcoil.models.istio.telemetry import v1 as istio_telemetry_v1
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from google.protobuf import json_format

import eg_jsonpatch
import envoy_gateway_models
import flagger_models

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "tools"

ISTIO_MODELS: dict[tuple[str, str], type[pydantic.BaseModel]] = {
    ("extensions.istio.io/v1alpha1", "WasmPlugin"): istio_ext.WasmPlugin,
    ("networking.istio.io/v1", "VirtualService"): istio_net_v1.VirtualService,
    ("networking.istio.io/v1", "DestinationRule"): istio_net_v1.DestinationRule,
    ("networking.istio.io/v1", "Gateway"): istio_net_v1.Gateway,
    ("networking.istio.io/v1beta1", "VirtualService"): istio_net_v1beta1.VirtualService,
    ("networking.istio.io/v1beta1", "DestinationRule"): istio_net_v1beta1.DestinationRule,
    ("networking.istio.io/v1beta1", "Gateway"): istio_net_v1beta1.Gateway,
    ("networking.istio.io/v1alpha3", "EnvoyFilter"): istio_net_v1alpha3.EnvoyFilter,
    ("telemetry.istio.io/v1", "Telemetry"): istio_telemetry_v1.Telemetry,
}
FLAGGER_MODELS: dict[tuple[str, str], type[pydantic.BaseModel]] = {
    ("flagger.app/v1beta1", "Canary"): flagger_models.Canary,
    ("flagger.app/v1beta1", "MetricTemplate"): flagger_models.MetricTemplate,
}
# EnvoyFilter applyTo -> the Envoy type its patch value is (istio pkg/config/xds BuildXDSObjectFromStruct).
ENVOY_PATCH_TYPES = {
    "HTTP_ROUTE": route_components_pb2.Route,
    "VIRTUAL_HOST": route_components_pb2.VirtualHost,
    "ROUTE_CONFIGURATION": route_pb2.RouteConfiguration,
    "CLUSTER": cluster_pb2.Cluster,
}
# Checked by tools/validate_argo.mjs (npm models).
ARGO_KINDS = {
    ("argoproj.io/v1alpha1", "Rollout"),
    ("argoproj.io/v1alpha1", "AnalysisTemplate"),
    ("argoproj.io/v1alpha1", "ClusterAnalysisTemplate"),
    ("gateway.networking.k8s.io/v1", "Gateway"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    ("v1", "Service"),
}
# Kinds shipped here with no schema at all. Reported as SKIPPED (never as valid) so they stay
# visible; anything else without a schema is an error.
NO_SCHEMA_PACKAGE: set[tuple[str, str]] = set()
# Free-form by definition (google.protobuf.Struct / map fields): not walked for unknown keys.
# pluginConfig is checked by the filter's own parser instead.
FREE_FORM = {"pluginConfig"}


SKIPPED = "SKIPPED"


class Invalid(Exception):
    pass


# ---- strict unknown-key walk over a validated pydantic model ---------------------------------------


def unknown_keys(data: Any, value: Any, path: str) -> list[str]:
    """Keys in `data` (the input) that the validated `value` (a pydantic model, list, dict) has no field for."""
    found: list[str] = []
    if isinstance(value, pydantic.BaseModel) and isinstance(data, dict):
        fields = type(value).model_fields
        by_key: dict[str, str] = {}
        for name, info in fields.items():
            by_key[info.alias or name] = name
        for key, sub in data.items():
            name = by_key.get(key)
            if name is None:
                found.append(f"{path}.{key}" if path else key)
                continue
            if key in FREE_FORM:
                continue
            found.extend(unknown_keys(sub, getattr(value, name), f"{path}.{key}" if path else key))
    elif isinstance(value, pydantic.RootModel):
        found.extend(unknown_keys(data, value.root, path))
    elif isinstance(value, list) and isinstance(data, list):
        for i, (d, v) in enumerate(zip(data, value)):
            found.extend(unknown_keys(d, v, f"{path}[{i}]"))
    elif isinstance(value, dict) and isinstance(data, dict):
        for key, sub in data.items():
            if key in value:
                found.extend(unknown_keys(sub, value[key], f"{path}.{key}"))
    return found


def validate_istio(doc: dict, model: type[pydantic.BaseModel]) -> pydantic.BaseModel:
    try:
        obj = model.model_validate(doc)
    except pydantic.ValidationError as e:
        lines = []
        for err in e.errors():
            loc = ".".join(str(p) for p in err["loc"])
            lines.append(f"{loc}: {err['msg']}")
        raise Invalid("; ".join(lines)) from None
    unknown = unknown_keys(doc, obj, "")
    if unknown:
        raise Invalid("unknown field(s): " + ", ".join(unknown))
    return obj


def validate_envoyfilter_values(doc: dict) -> None:
    for i, cp in enumerate(doc.get("spec", {}).get("configPatches") or []):
        where = f"spec.configPatches[{i}]"
        apply_to = cp.get("applyTo")
        patch = cp.get("patch") or {}
        if "value" not in patch:
            continue
        typ = ENVOY_PATCH_TYPES.get(apply_to)
        if typ is None:
            raise Invalid(f"{where}.patch.value: applyTo {apply_to} is not checked by this validator")
        try:
            msg = json_format.ParseDict(patch["value"], typ())
        except json_format.ParseError as e:
            raise Invalid(f"{where}.patch.value: {str(e).splitlines()[0]}") from None
        # A MERGE into a route's weighted_clusters is only safe on a route istiod always renders as
        # weighted_clusters: name that route, and keep istiod < 1.19 (which could render it as a
        # plain cluster, making this an empty weighted_clusters Envoy rejects) out by proxyVersion.
        if apply_to == "HTTP_ROUTE" and patch.get("operation") in ("MERGE", "MERGE_AND_REPLACE_LIST"):
            if msg.route.HasField("weighted_clusters"):
                match = cp.get("match") or {}
                route = ((match.get("routeConfiguration") or {}).get("vhost") or {}).get("route") or {}
                if not route.get("name"):
                    raise Invalid(f"{where}.match.routeConfiguration.vhost.route.name: required for a weighted_clusters MERGE")
                if not (match.get("proxy") or {}).get("proxyVersion"):
                    raise Invalid(f"{where}.match.proxy.proxyVersion: required for a weighted_clusters MERGE")


def validate_flagger(doc: dict, model: type[pydantic.BaseModel]) -> None:
    spec = doc.get("spec") or {}
    for key in flagger_models.NOT_CHECKED:
        if key in (spec.get("service") or {}) or key in (spec.get("analysis") or {}):
            raise Invalid(f"spec: {key} is not checked by this validator (Istio/Gateway API types inside a Canary)")
    validate_istio(doc, model)
    # The gatewayapi provider refuses a Canary without gatewayRefs (flagger pkg/router/gateway_api.go:66-68).
    if str(spec.get("provider", "")).startswith("gatewayapi") and not (spec.get("service") or {}).get("gatewayRefs"):
        raise Invalid("spec.service.gatewayRefs: required with provider gatewayapi")


# ---- Envoy Gateway -----------------------------------------------------------------------------------


def validate_envoy_gateway(doc: dict, model: type[pydantic.BaseModel], checker: str | None) -> None:
    spec = doc.get("spec") or {}
    for key in envoy_gateway_models.NOT_CHECKED.get(str(doc.get("kind")), ()):
        if key in spec:
            raise Invalid(f"spec.{key}: not checked by this validator (tools/envoy_gateway_models.py)")
    validate_istio(doc, model)
    if doc["kind"] == "EnvoyProxy":
        check_bootstrap_tags(spec)
    elif doc["kind"] == "EnvoyPatchPolicy":
        for i, jp in enumerate(spec.get("jsonPatches") or []):
            path = (jp.get("operation") or {}).get("jsonPath")
            try:
                if path:
                    eg_jsonpatch.parse(path)
            except eg_jsonpatch.Unsupported as e:
                raise Invalid(f"spec.jsonPatches[{i}].operation.jsonPath: {e}") from None
    elif doc["kind"] == "EnvoyExtensionPolicy" and checker:
        for i, w in enumerate(spec.get("wasm") or []):
            check_plugin_config(checker, w.get("config"), f"spec.wasm[{i}].config")


def check_bootstrap_tags(spec: dict) -> None:
    boot = spec.get("bootstrap") or {}
    if not boot.get("value"):
        return
    try:
        value = yaml.safe_load(boot["value"]) or {}
    except yaml.YAMLError as e:
        raise Invalid(f"spec.bootstrap.value: not YAML: {e}") from None
    tags = (value.get("stats_config") or {}).get("stats_tags")
    if tags != envoy_stats_tags():
        raise Invalid(
            "spec.bootstrap.value: stats_tags differ from envoy-config/istio-ecds.yaml "
            f"(have {tags}, want {envoy_stats_tags()})"
        )


# ---- ConfigMap (the Istio bootstrap override) ------------------------------------------------------


def envoy_stats_tags() -> list[dict]:
    cfg = yaml.safe_load((ROOT / "envoy-config/istio-ecds.yaml").read_text())
    return [t for t in cfg["stats_config"]["stats_tags"] if t["regex"].startswith("(;")]


def keys_within(where: str, d: object, allowed: set[str]) -> dict:
    if not isinstance(d, dict):
        raise Invalid(f"{where}: must be a map")
    extra = sorted(set(d) - allowed)
    if extra:
        raise Invalid(f"{where}: unknown field(s): " + ", ".join(extra))
    return d


def validate_featureflag(doc: dict) -> None:
    """OpenFeature's FeatureFlag (open-feature-operator api/core/v1beta1/featureflag_types.go):
    spec.flagSpec holds flags (state ENABLED/DISABLED, variants, defaultVariant, targeting,
    metadata), metadata and $evaluators; the rest of the CRD is free-form JSON."""
    keys_within("", doc, {"apiVersion", "kind", "metadata", "spec"})
    spec = keys_within("spec", doc.get("spec"), {"flagSpec"})
    flag_spec = keys_within("spec.flagSpec", spec.get("flagSpec"), {"flags", "metadata", "$evaluators"})
    for key, flag in keys_within("spec.flagSpec.flags", flag_spec.get("flags"), set(flag_spec.get("flags") or {})).items():
        at = f"spec.flagSpec.flags.{key}"
        keys_within(at, flag, {"state", "variants", "defaultVariant", "targeting", "metadata"})
        if flag.get("state") not in ("ENABLED", "DISABLED"):
            raise Invalid(f"{at}.state: must be ENABLED or DISABLED")
        if not isinstance(flag.get("variants"), dict) or not isinstance(flag.get("defaultVariant"), str):
            raise Invalid(f"{at}: variants (a map) and defaultVariant (a string) are required")


def validate_configmap(doc: dict) -> None:
    allowed = {"apiVersion", "kind", "metadata", "data", "binaryData", "immutable"}
    extra = sorted(set(doc) - allowed)
    if extra:
        raise Invalid("unknown field(s): " + ", ".join(extra))
    meta = doc.get("metadata") or {}
    try:
        obj = apimachinery.ObjectMeta.model_validate(meta)
    except pydantic.ValidationError as e:
        raise Invalid(f"metadata: {e.errors()[0]['msg']}") from None
    unknown = unknown_keys(meta, obj, "metadata")
    if unknown:
        raise Invalid("unknown field(s): " + ", ".join(unknown))
    data = doc.get("data") or {}
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise Invalid("data: must map strings to strings")
    if "custom_bootstrap.json" in data:
        try:
            boot = json.loads(data["custom_bootstrap.json"])
        except json.JSONDecodeError as e:
            raise Invalid(f"data.custom_bootstrap.json: not JSON: {e}") from None
        tags = boot.get("stats_config", {}).get("stats_tags")
        want = envoy_stats_tags()
        if tags != want:
            raise Invalid(
                "data.custom_bootstrap.json: stats_tags differ from envoy-config/istio-ecds.yaml "
                f"(have {tags}, want {want})"
            )


# ---- pluginConfig through the filter's parser ------------------------------------------------------


def check_plugin_config(checker: str, plugin_config: Any, where: str = "spec.pluginConfig") -> None:
    out = subprocess.run(
        [checker],
        input=json.dumps(plugin_config).encode(),
        capture_output=True,
        check=False,
    )
    text = (out.stdout + out.stderr).decode(errors="replace").strip()
    if out.returncode != 0 or text != "ok":
        raise Invalid(f"{where} rejected by the filter: {text}")


# ---- driver ----------------------------------------------------------------------------------------


def documents(path: Path) -> list[tuple[str, dict]]:
    text = path.read_text()
    docs = []
    for i, doc in enumerate(yaml.safe_load_all(text)):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise SystemExit(f"{path}: document {i} is not a mapping")
        docs.append((f"{path}#{i}", doc))
    return docs


def expected_error(path: Path) -> str | None:
    for line in path.read_text().splitlines():
        if line.startswith("# expect-error:"):
            return line.split(":", 1)[1].strip()
    return None


def docs_kind(docs: list[tuple[str, dict]], name: str) -> str:
    doc = dict(docs)[name]
    return f"{doc.get('apiVersion')} {doc.get('kind')}"


def collect(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(x for x in p.iterdir() if x.suffix in (".yaml", ".yml")))
        elif p.exists():
            files.append(p)
        else:
            raise SystemExit(f"no such file or directory: {p}")
    return files


def make_validators(checker: str | None) -> Callable[[list[tuple[str, dict]]], dict[str, str | None]]:
    def run(docs: list[tuple[str, dict]]) -> dict[str, str | None]:
        """Map each document name to None (valid) or the reason it is invalid."""
        results: dict[str, str | None] = {}
        argo: list[tuple[str, dict]] = []
        for name, doc in docs:
            gvk = (str(doc.get("apiVersion")), str(doc.get("kind")))
            try:
                if gvk in ISTIO_MODELS:
                    validate_istio(doc, ISTIO_MODELS[gvk])
                    if gvk[1] == "WasmPlugin" and checker:
                        check_plugin_config(checker, doc.get("spec", {}).get("pluginConfig"))
                    if gvk[1] == "EnvoyFilter":
                        validate_envoyfilter_values(doc)
                elif gvk in FLAGGER_MODELS:
                    validate_flagger(doc, FLAGGER_MODELS[gvk])
                elif gvk in envoy_gateway_models.MODELS:
                    validate_envoy_gateway(doc, envoy_gateway_models.MODELS[gvk], checker)
                elif gvk in ARGO_KINDS:
                    argo.append((name, doc))
                    continue
                elif gvk == ("v1", "ConfigMap"):
                    validate_configmap(doc)
                elif gvk == ("core.openfeature.dev/v1beta1", "FeatureFlag"):
                    validate_featureflag(doc)
                elif gvk in NO_SCHEMA_PACKAGE:
                    results[name] = SKIPPED
                    continue
                else:
                    raise Invalid(f"no schema for {gvk[0]} {gvk[1]} (add one to tools/validate_manifests.py)")
                results[name] = None
            except Invalid as e:
                results[name] = str(e)
        if argo:
            results.update(validate_argo(argo))
        return results

    return run


def validate_argo(docs: list[tuple[str, dict]]) -> dict[str, str | None]:
    node = os.environ.get("NODE", "node")
    payload = json.dumps([{"name": n, "doc": d} for n, d in docs])
    out = subprocess.run(
        [node, str(TOOLS / "validate_argo.mjs")],
        input=payload.encode(),
        capture_output=True,
        check=False,
        cwd=TOOLS,
    )
    if out.returncode != 0:
        raise SystemExit(f"validate_argo.mjs failed:\n{out.stderr.decode(errors='replace')}")
    return {r["name"]: r["error"] for r in json.loads(out.stdout)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--expect-invalid", action="store_true", help="every document must be rejected")
    ap.add_argument("--check-config", metavar="BIN", help="rollout-check-config binary for pluginConfig")
    ap.add_argument("paths", nargs="+")
    args = ap.parse_args()

    run = make_validators(args.check_config)
    failed = 0
    checked = 0
    skipped = 0
    for path in collect(args.paths):
        docs = documents(path)
        if not docs:
            print(f"FAIL {path}: no documents")
            failed += 1
            continue
        results = run(docs)
        want = expected_error(path) if args.expect_invalid else None
        if args.expect_invalid and not want:
            print(f"FAIL {path}: no '# expect-error: ...' line")
            failed += 1
            continue
        for name, _ in docs:
            checked += 1
            err = results[name]
            if err == SKIPPED:
                checked -= 1
                skipped += 1
                print(f"SKIPPED  {name}: no schema package for {docs_kind(docs, name)}")
                continue
            if not args.expect_invalid:
                if err is None:
                    print(f"valid    {name}")
                else:
                    print(f"INVALID  {name}: {err}")
                    failed += 1
            elif err is None:
                print(f"FAIL     {name}: accepted, but it must be rejected ({want})")
                failed += 1
            elif want not in err:
                print(f"FAIL     {name}: rejected for another reason: {err} (expected: {want})")
                failed += 1
            else:
                print(f"rejected {name}: {err}")
    print(f"{checked - failed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
