#!/usr/bin/env python3
"""The Envoy routes each Gateway API gateway gives at each state of the shipped Argo Rollouts and
Flagger canaries, with the shipped patch applied as the gateway applies it.

    gateway_routes.py --out DIR      write DIR/<gateway>-<controller>-<n>-<state>.yaml and DIR/states.json
    gateway_routes.py --check DIR    exit 1 if DIR differs from what the manifests give now

Gateways: Istio's Gateway API implementation (istio/gateway-api/, EnvoyFilter merged as istiod merges
it, via tools/istio_routes.py) and Envoy Gateway (envoy-gateway/, EnvoyPatchPolicy applied as Envoy
Gateway applies it, via tools/eg_jsonpatch.py). No API server, controller or gateway runs here: each
step is reproduced from their source (docs/gateway-api.md names the commits and lines):
- Argo's Gateway API plugin: weights rewritten in place by Service name, managed header rules appended
  (pkg/plugin/httproute.go); when Argo calls it (rollout/trafficrouting.go);
- Flagger's gatewayapi provider: the whole spec rewritten, one rule [primary, canary]
  (pkg/router/gateway_api.go); when (pkg/controller/scheduler.go);
- istiod: pilot/pkg/config/kube/gateway/conversion.go (names, weight-0 dropped), route.go (one
  destination is `cluster`), route_collections.go + conversion.go sortHTTPRoutes (merge and order);
- Envoy Gateway: internal/gatewayapi/route.go (weight 0 skipped, mergeBackends), helpers.go (names),
  internal/xds/translator/route.go (cluster or weighted_clusters), internal/gatewayapi/sort.go (order).
Only what decides the pick is rendered (names, matches, cluster / weighted_clusters).
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any, Callable

import yaml
from envoy.config.route.v3 import route_pb2
from google.protobuf import json_format

import eg_jsonpatch
import istio_routes

ROOT = Path(__file__).resolve().parent.parent
PORT = 80


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def kind(ds: list[dict], k: str) -> list[dict]:
    return [d for d in ds if d.get("kind") == k]


# ---- the controllers -------------------------------------------------------------------------------


def argo_set_weight(route: dict, rollout: dict, w: int) -> dict:
    """setHTTPRouteWeight (httproute.go:15-73): by Service name, in place, managed rules skipped."""
    canary = rollout["spec"]["strategy"]["canary"]
    managed = {m["name"] for m in canary["trafficRouting"].get("managedRoutes", [])}
    route = copy.deepcopy(route)
    found = set()
    for rule in route["spec"]["rules"]:
        if rule.get("name") in managed:
            continue
        for ref in rule["backendRefs"]:
            if ref["name"] == canary["canaryService"]:
                ref["weight"] = w
                found.add("canary")
            elif ref["name"] == canary["stableService"]:
                ref["weight"] = 100 - w
                found.add("stable")
    if found != {"canary", "stable"}:
        raise SystemExit("Argo needs both Services in the HTTPRoute (httproute.go:52-54)")
    return route


def argo_header_route(route: dict, rollout: dict, step: dict | None) -> dict:
    """setHTTPHeaderRoute (httproute.go:75-194) / removeHTTPManagedRoutes (263-301)."""
    canary = rollout["spec"]["strategy"]["canary"]
    managed = {m["name"] for m in canary["trafficRouting"].get("managedRoutes", [])}
    route = copy.deepcopy(route)
    rules = [r for r in route["spec"]["rules"] if r.get("name") not in managed]
    if step and step.get("match"):
        headers = [{"name": m["headerName"], "value": m["headerValue"]["exact"]} for m in step["match"]]
        src = next(r for r in rules if any(b["name"] == canary["canaryService"] for b in r["backendRefs"]))
        port = next(b["port"] for b in src["backendRefs"] if b["name"] == canary["canaryService"])
        matches = [dict(m, headers=(m.get("headers") or []) + headers) for m in src.get("matches") or [{}]]
        rules.append({"name": step["name"], "matches": matches,
                      "backendRefs": [{"group": "", "kind": "Service", "name": canary["canaryService"], "port": port}]})
    route["spec"]["rules"] = rules
    return route


def argo_states(route: dict, rollout: dict) -> list[tuple[str, dict, str, int]]:
    """(state, HTTPRoute, what happened, canary weight) through steps, promotion and abort."""
    out = [("rest", route, "at rest: the HTTPRoute as applied", 0)]
    w, r = 0, route
    for i, step in enumerate(rollout["spec"]["strategy"]["canary"]["steps"]):
        if "setHeaderRoute" in step:
            r = argo_header_route(r, rollout, step["setHeaderRoute"])
        elif "setWeight" in step:
            w = step["setWeight"]
            r = argo_set_weight(r, rollout, w)
            out.append((f"weight-{w}", r, f"step {i}: setWeight {w}", w))
    last = r
    # trafficrouting.go:266-268, then 199-203 once the stable Service selects the new pods.
    out.append(("promote-canary-100", argo_set_weight(r, rollout, 100), "steps done: canary 100", 100))
    out.append(("promoted", argo_set_weight(argo_header_route(r, rollout, None), rollout, 0),
                "fully promoted: stable (now the new pods) 100", 0))
    # trafficrouting.go:204-221, 358-366.
    out.append(("abort", argo_set_weight(argo_header_route(last, rollout, None), rollout, 0),
                f"abort at {w} %: canary 0", 0))
    return out


def flagger_route(canary: dict, primary_w: int, canary_w: int) -> dict:
    """Reconcile / SetRoutes (gateway_api.go:65-113, 335-444): one unnamed rule, [primary, canary]."""
    svc = canary["spec"]["service"]
    name = svc.get("name") or canary["spec"]["targetRef"]["name"]

    def ref(n: str, w: int) -> dict:
        return {"group": "", "kind": "Service", "name": n, "port": svc["port"], "weight": w}

    return {
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": canary["metadata"]["namespace"]},
        "spec": {
            "parentRefs": svc["gatewayRefs"], "hostnames": svc["hosts"],
            "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                       "backendRefs": [ref(f"{name}-primary", primary_w), ref(f"{name}-canary", canary_w)]}],
        },
    }


def flagger_states(canary: dict) -> list[tuple[str, dict, str, int]]:
    out = [("rest", flagger_route(canary, 100, 0), "initialized: primary 100 / canary 0", 0)]
    w = 0
    for w in canary["spec"]["analysis"]["stepWeights"]:
        out.append((f"weight-{w}", flagger_route(canary, 100 - w, w), f"advance canary weight {w}", w))
    # scheduler.go:616-636 then 519-530; rollback 948-963.
    out.append(("promoted", flagger_route(canary, 100, 0), "promoted: primary (the new spec) 100", 0))
    out.append(("rollback", flagger_route(canary, 100, 0), f"rollback at {w} %: primary 100 / canary 0", 0))
    return out


# ---- HTTPRoute rules -> one entry per match (both gateways split rules by match) --------------------


def header_matchers(match: dict) -> list[dict]:
    out = []
    for h in match.get("headers") or []:
        if h.get("type", "Exact") != "Exact":
            raise SystemExit(f"header match {h} not rendered here")
        out.append({"name": h["name"], "string_match": {"exact": h["value"]}})
    return out


def route_match(match: dict) -> dict:
    path = match.get("path") or {"type": "PathPrefix", "value": "/"}
    if path != {"type": "PathPrefix", "value": "/"}:
        raise SystemExit(f"path match {path} not rendered here")
    m: dict[str, Any] = {"prefix": "/"}
    hs = header_matchers(match)
    if hs:
        m["headers"] = hs
    return m


def entries(route: dict) -> list[dict]:
    """(route, rule index, rule, match index, match) for every match of every rule."""
    out = []
    for i, rule in enumerate(route["spec"]["rules"]):
        for j, m in enumerate(rule.get("matches") or [{}]):
            out.append({"route": route, "i": i, "rule": rule, "j": j, "match": m})
    return out


# ---- istiod ----------------------------------------------------------------------------------------


def istio_cluster(ref: dict, ns: str) -> str:
    # conversion.go:1193-1209; cluster outbound|PORT||HOST (model.BuildSubsetKey).
    if ref.get("kind", "Service") == "Hostname":
        return f"outbound|{ref['port']}||{ref['name']}"
    return f"outbound|{ref['port']}||{ref['name']}.{ns}.svc.cluster.local"


def istio_action(rule: dict, ns: str) -> dict:
    """conversion.go:977-998 (weight 0 dropped) and route.go:686-706 (one destination: cluster)."""
    refs = [r for r in rule["backendRefs"] if r.get("weight", 1) != 0]
    if not refs:
        return {"direct_response": {"status": 500}}  # conversion.go:230-235
    if len(refs) == 1:
        return {"route": {"cluster": istio_cluster(refs[0], ns)}}
    return {"route": {"weighted_clusters": {"clusters": [
        {"name": istio_cluster(r, ns), "weight": r.get("weight", 1)} for r in refs]}}}


def istio_translate(routes: list[dict]) -> list[dict]:
    """The Envoy routes of the HTTPRoutes' rules, merged and ordered."""
    out = []
    for e in [e for r in routes for e in entries(r)]:
        ns, name = e["route"]["metadata"]["namespace"], e["route"]["metadata"]["name"]
        rname = e["rule"].get("name") or f"{ns}.{name}.{e['i']}"  # conversion.go:106-112
        out.append(dict({"name": rname, "match": route_match(e["match"])}, **istio_action(e["rule"], ns)))
    # sortHTTPRoutes (conversion.go:462-490): all prefix "/" here, so more header matches first.
    out.sort(key=lambda r: -len(r["match"].get("headers", [])))
    return out


def istio_render(routes: list[dict], ef: dict, host: str) -> dict:
    patched = istio_routes.apply_envoyfilter(ef, f"{host}:{PORT}", istio_translate(routes), istio_routes.PROXY_VERSION)
    return istio_routes.route_configuration(patched, host)


# ---- Envoy Gateway ---------------------------------------------------------------------------------


def eg_action(e: dict, merged: Callable[[str], bool]) -> dict:
    """gatewayapi/route.go:347-350, 422-438 and translator/route.go:325-409."""
    route, rule = e["route"], e["rule"]
    ns, name = route["metadata"]["namespace"], route["metadata"]["name"]
    refs = [r for r in rule["backendRefs"] if r.get("weight", 1) != 0]
    if not refs:
        return {"direct_response": {"status": 500}}
    if not all(merged(r["name"]) for r in refs):
        # Not merged: one cluster per rule, the weights in its localities (helpers.go:561-563).
        return {"route": {"cluster": f"httproute/{ns}/{name}/rule/{e['i']}"}}
    names = [f"service/{ns}/{r['name']}/{r['port']}/http" for r in refs]  # helpers.go:569-577
    if len(refs) == 1:
        return {"route": {"cluster": names[0]}}
    return {"route": {"weighted_clusters": {"clusters": [
        {"name": n, "weight": r.get("weight", 1)} for n, r in zip(names, refs)]}}}


def eg_render(routes: list[dict], epp: dict, merged: Callable[[str], bool], gw: dict, host: str) -> dict:
    listener = gw["spec"]["listeners"][0]["name"]
    rc_name = f"{gw['metadata']['namespace']}/{gw['metadata']['name']}/{listener}"  # listener.go:579-594
    under = host.replace(".", "_")
    out = []
    for e in [e for r in routes for e in entries(r)]:
        m = e["route"]["metadata"]
        rname = f"httproute/{m['namespace']}/{m['name']}/rule/{e['i']}/match/{e['j']}/{under}"
        out.append(dict({"name": rname, "match": route_match(e["match"])}, **eg_action(e, merged)))
    # sort.go:19-138, stable and descending: more header matches first.
    out.sort(key=lambda r: -len(r["match"].get("headers", [])))
    rc = {"name": rc_name, "ignore_port_in_host_matching": True,
          "virtual_hosts": [{"name": f"{rc_name}/{under}", "domains": [host], "routes": out}]}
    rc = json_format.MessageToDict(json_format.ParseDict(rc, route_pb2.RouteConfiguration()),
                                   preserving_proto_field_name=True)
    return eg_patch(rc, epp)


def eg_patch(rc: dict, epp: dict) -> dict:
    """processJSONPatches (translator/jsonpatch.go:38-180): a patch that selects nothing is skipped."""
    for p in epp["spec"]["jsonPatches"]:
        if p["type"].endswith("RouteConfiguration") and p["name"] == rc["name"]:
            rc, _ = eg_jsonpatch.patch(rc, p["operation"])
    json_format.ParseDict(rc, route_pb2.RouteConfiguration())  # strict: as protojson.Unmarshal
    return rc


# ---- the shipped sets ------------------------------------------------------------------------------


def selected(labels: dict, proxy: dict) -> bool:
    sel = ((proxy["spec"].get("mergeBackends") or {}).get("selector") or {}).get("matchLabels") or {}
    return "mergeBackends" in proxy["spec"] and all(labels.get(k) == v for k, v in sel.items())


def service_labels(ctl: str, ds: list[dict]) -> dict[str, dict]:
    """The labels of each Service the split names: Argo's from routing.yaml, Flagger's from its Canary
    (pkg/router/kubernetes_default.go:53-59)."""
    if ctl == "argo":
        return {s["metadata"]["name"]: s["metadata"].get("labels") or {} for s in kind(ds, "Service")}
    c = kind(ds, "Canary")[0]
    svc, name = c["spec"]["service"], c["spec"]["targetRef"]["name"]
    return {f"{name}-{v}": (svc.get(v) or {}).get("labels") or {} for v in ("primary", "canary")}


def controller_states(ctl: str, ds: list[dict]) -> tuple[list[tuple[str, dict, str, int]], list[dict]]:
    """The controller's states of its HTTPRoute, and the other HTTPRoutes (the overrides)."""
    routes = kind(ds, "HTTPRoute")
    if ctl == "argo":
        rollout = kind(ds, "Rollout")[0]
        plugin = rollout["spec"]["strategy"]["canary"]["trafficRouting"]["plugins"]["argoproj-labs/gatewayAPI"]
        names = {r["name"] for r in plugin["httpRoutes"]}
        managed = [r for r in routes if r["metadata"]["name"] in names]
        return argo_states(managed[0], rollout), [r for r in routes if r["metadata"]["name"] not in names]
    return flagger_states(kind(ds, "Canary")[0]), routes


def render_set(gateway: str, ctl: str) -> list[tuple[str, dict, str, int]]:
    """(state name, RouteConfiguration, what, canary weight) for one gateway and controller."""
    base = ROOT / ("istio/gateway-api" if gateway == "istio" else "envoy-gateway")
    ds = [d for p in sorted((base / ctl).glob("*.yaml")) + sorted(base.glob("*.yaml")) for d in docs(p)]
    gw = kind(ds, "Gateway")[0]
    host = gw["spec"]["listeners"][0]["hostname"]
    states, others = controller_states(ctl, ds)
    out = []
    for n, (state, route, what, w) in enumerate(states):
        routes = [route] + others
        if gateway == "istio":
            rc = istio_render(routes, kind(ds, "EnvoyFilter")[0], host)
        else:
            labels = service_labels(ctl, ds)
            proxy = kind(ds, "EnvoyProxy")[0]
            rc = eg_render(routes, kind(ds, "EnvoyPatchPolicy")[0],
                           lambda s: selected(labels.get(s, {}), proxy), gw, host)
        out.append((f"{gateway}-{ctl}-{n}-{state}", rc, what, w))
    return out


def render() -> tuple[dict[str, str], list[dict]]:
    files: dict[str, str] = {}
    index: list[dict] = []
    for gateway in ("istio", "envoy-gateway"):
        for ctl in ("argo", "flagger"):
            for state, rc, what, w in render_set(gateway, ctl):
                files[f"{state}.yaml"] = dump(rc, f"{what} ({gateway}, {ctl})")
                index.append({"state": state, "gateway": gateway, "controller": ctl, "file": f"{state}.yaml",
                              "what": what, "weights": {"stable": 100 - w, "canary": w}, "expect": "accepted"})
    state, rc = hazard()
    what = "Flagger at rest on Istio with the VirtualService design's patch (header_name alone): Envoy must reject it"
    files[f"{state}.yaml"] = dump(rc, what)
    index.append({"state": state, "gateway": "istio", "controller": "flagger", "file": f"{state}.yaml",
                  "what": what, "weights": {"stable": 100, "canary": 0}, "expect": "rejected"})
    return files, index


def hazard() -> tuple[str, dict]:
    """Why the shipped EnvoyFilter brings a cluster: the same MERGE without it, on the `cluster` route
    istiod renders at rest, leaves a weighted_clusters with no cluster (merge.go:100-133)."""
    base = ROOT / "istio/gateway-api"
    ds = [d for p in sorted((base / "flagger").glob("*.yaml")) + sorted(base.glob("*.yaml")) for d in docs(p)]
    ef = copy.deepcopy(kind(ds, "EnvoyFilter")[0])
    del ef["spec"]["configPatches"][0]["patch"]["value"]["route"]["weighted_clusters"]["clusters"]
    states, others = controller_states("flagger", ds)
    host = kind(ds, "Gateway")[0]["spec"]["listeners"][0]["hostname"]
    routes = istio_translate([states[0][1]] + others)
    patched = istio_routes.apply_envoyfilter(ef, f"{host}:{PORT}", routes, istio_routes.PROXY_VERSION)
    return "istio-flagger-hazard-rest", istio_routes.route_configuration_unchecked(patched, host)


def dump(cfg: dict, what: str) -> str:
    head = "# Generated by tools/gateway_routes.py from istio/gateway-api/ and envoy-gateway/ - do not edit.\n"
    return head + f"# {what}\n" + yaml.safe_dump(cfg, sort_keys=False, width=100)


def main() -> int:
    return istio_routes.cli(__doc__, render, "istio/gateway-api/ and envoy-gateway/")


if __name__ == "__main__":
    sys.exit(main())
