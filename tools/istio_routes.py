#!/usr/bin/env python3
"""The Envoy routes istiod gives the ingress gateway at each state of the shipped Argo Rollouts and
Flagger canaries, with istio/route-weights/envoyfilter.yaml merged in as istiod merges it.

    istio_routes.py --out DIR      write DIR/<state>.yaml (RouteConfiguration) and DIR/states.json
    istio_routes.py --check DIR    exit 1 if DIR differs from what the manifests give now

No Kubernetes API server or istiod runs here, so each step is reproduced from their source (the
commits docs/deploying.md names), reading the shipped manifests:
- what the controller writes into the VirtualService: Argo Rollouts rollout/trafficrouting.go
  reconcileTrafficRouting and rollout/trafficrouting/istio/istio.go (weights rewritten in place,
  managed routes first); Flagger pkg/router/istio.go SetRoutes (the whole route list replaced by
  [primary, canary]) and pkg/controller/scheduler.go (steps, promotion, rollback);
- how istiod turns a route into Envoy's: istio pilot/pkg/networking/core/route/route.go
  TranslateRoute (name, match) and applyHTTPRouteDestination (one destination: `cluster`; more:
  `weighted_clusters` without the 0-weight ones), cluster names from model.BuildSubsetKey,
  delegate routes merged by pilot/pkg/model/virtualservice.go mergeHTTPRoute;
- how an EnvoyFilter HTTP_ROUTE MERGE lands: pilot/pkg/networking/core/envoyfilter/rc_patch.go
  (vhost and route match) and pkg/proto/merge/merge.go (proto merge: messages recurse, lists
  append, a oneof member replaces the others, Durations replace), done here on Envoy's own
  protobuf types (PyPI xds-protos), so a patch value with an unknown field is refused as istiod's
  validation refuses it.
Only what decides the pick is rendered (match, cluster / weighted_clusters, route names); istiod
adds retry policy, timeouts, decorators and metadata, which do not interact with the patch.

The `legacy-*` states are the pre-1.19 rendering (a lone remaining destination collapsed to a
plain `cluster`, removed by istio PR #45658) with the patch forced on: the rejection the
EnvoyFilter's proxyVersion guard exists to avoid. The e2e test expects Envoy to reject them.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from google.protobuf import json_format
from google.protobuf.message import Message

ROOT = Path(__file__).resolve().parent.parent
ARGO_ROUTING = ROOT / "istio/routing.yaml"
ARGO_ROLLOUT = ROOT / "istio/rollout.yaml"
FLAGGER_ROUTING = ROOT / "istio/flagger/routing.yaml"
FLAGGER_CANARY = ROOT / "istio/flagger/canary.yaml"
ENVOYFILTER = ROOT / "istio/route-weights/envoyfilter.yaml"

# The gateway's port and the Service port the destinations resolve to (one port, 80).
GATEWAY_PORT = 80
SERVICE_PORT = 80
# The proxy version the patch is evaluated against: a current Istio, and a pre-1.19 one.
PROXY_VERSION = "1.28.0"
LEGACY_PROXY_VERSION = "1.18.7"


def load_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def find(docs: list[dict], kind: str, name: str | None = None) -> dict:
    for d in docs:
        if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name):
            return d
    raise SystemExit(f"no {kind} {name or ''} in the manifests")


# ---- the controllers ---------------------------------------------------------------------------


def argo_states(vs: dict, rollout: dict) -> list[tuple[str, dict, str]]:
    """(state, VirtualService spec, what happened) through the Rollout's steps, promotion, abort."""
    canary = rollout["spec"]["strategy"]["canary"]
    istio = canary["trafficRouting"]["istio"]
    route_names = istio["virtualService"]["routes"]
    stable_subset = istio["destinationRule"]["stableSubsetName"]
    canary_subset = istio["destinationRule"]["canarySubsetName"]
    managed = [m["name"] for m in canary["trafficRouting"].get("managedRoutes", [])]
    spec = copy.deepcopy(vs["spec"])

    def set_weight(spec: dict, w: int) -> dict:
        # processRoutes (istio.go 223-283): canary subset -> w, stable subset -> 100-w, in place.
        spec = copy.deepcopy(spec)
        for r in spec["http"]:
            if r.get("name") not in route_names:
                continue
            subsets = {d["destination"].get("subset") for d in r["route"]}
            if {stable_subset, canary_subset} - subsets:
                raise SystemExit(f"route {r.get('name')}: Argo requires both subsets (istio.go 1205-1249)")
            for d in r["route"]:
                sub = d["destination"].get("subset")
                if sub == canary_subset:
                    d["weight"] = w
                elif sub == stable_subset:
                    d["weight"] = 100 - w
                else:
                    raise SystemExit(f"route {r.get('name')}: Argo deletes destination {d} (istio.go 264)")
        return spec

    def set_header_route(spec: dict, step: dict) -> dict:
        # reconcileVirtualServiceHeaderRoutes + createHeaderRoute + orderRoutes (istio.go 811-975,
        # 1460-1560): one canary destination, weight 100; managed routes first.
        spec = copy.deepcopy(spec)
        name = step["name"]
        spec["http"] = [r for r in spec["http"] if r.get("name") != name]
        if step.get("match"):
            host = vs["spec"]["http"][-1]["route"][0]["destination"]["host"]
            route = {
                "name": name,
                "match": [{"headers": {m["headerName"]: m["headerValue"]}} for m in step["match"]],
                "route": [{"destination": {"host": host, "subset": canary_subset}, "weight": 100}],
            }
            spec["http"].append(route)
        first = [r for n in managed for r in spec["http"] if r.get("name") == n]
        spec["http"] = first + [r for r in spec["http"] if r.get("name") not in managed]
        return spec

    def remove_managed(spec: dict) -> dict:
        spec = copy.deepcopy(spec)
        spec["http"] = [r for r in spec["http"] if r.get("name") not in managed]
        return spec

    out = [("argo-0-rest", spec, "at rest: the VirtualService as applied, stable 100 / canary 0")]
    weight = 0
    for i, step in enumerate(canary["steps"]):
        if "setHeaderRoute" in step:
            spec = set_header_route(spec, step["setHeaderRoute"])
        elif "setWeight" in step:
            weight = step["setWeight"]
            spec = set_weight(spec, weight)
            out.append((f"argo-{len(out)}-weight-{weight}", spec, f"step {i}: setWeight {weight}"))
    aborted_from = spec
    # End of the steps: desiredWeight = 100 (trafficrouting.go 265-268), then fully promoted:
    # managed routes removed and desiredWeight 0 (198-203) once the stable subset has the new pods.
    spec = set_weight(spec, 100)
    out.append((f"argo-{len(out)}-promote-canary-100", spec, "steps done: canary 100"))
    spec = set_weight(remove_managed(spec), 0)
    out.append((f"argo-{len(out)}-promoted", spec, "fully promoted: stable (now the new pods) 100"))
    # Abort from the last weight instead (trafficrouting.go 204-221): weight 0, managed routes removed.
    abort = set_weight(remove_managed(aborted_from), 0)
    out.append((f"argo-{len(out)}-abort", abort, f"abort at {weight} %: stable 100 / canary 0"))
    return out


def flagger_states(root: dict, canary: dict) -> list[tuple[str, dict, str]]:
    """(state, root VirtualService spec with Flagger's delegate merged in, what happened)."""
    name = canary["spec"]["targetRef"]["name"]
    ns = canary["metadata"]["namespace"]
    svc = canary["spec"]["service"]
    if not svc.get("delegation"):
        raise SystemExit("the Flagger setup here relies on service.delegation: true")
    analysis = canary["spec"]["analysis"]
    steps = analysis["stepWeights"]

    def delegate(primary_w: int, canary_w: int) -> list[dict]:
        # SetRoutes (istio.go 505-516): one unnamed route, [primary, canary]; port only with
        # portDiscovery (makeDestination 638-663).
        def dest(host: str, w: int) -> dict:
            d: dict[str, Any] = {"destination": {"host": host}, "weight": w}
            if svc.get("portDiscovery"):
                d["destination"]["port"] = {"number": svc["port"]}
            return d

        return [{"route": [dest(f"{name}-primary", primary_w), dest(f"{name}-canary", canary_w)]}]

    def merged(primary_w: int, canary_w: int) -> dict:
        # mergeVirtualServicesIfNeeded / mergeHTTPRoute (virtualservice.go 215-228): the delegate's
        # routes replace the root route, taking its name; short hosts resolve in the delegate's
        # namespace.
        spec = copy.deepcopy(root["spec"])
        http = []
        for r in spec["http"]:
            if "delegate" not in r:
                http.append(r)
                continue
            for d in delegate(primary_w, canary_w):
                d = copy.deepcopy(d)
                d["name"] = d.get("name") or r["name"]
                for dst in d["route"]:
                    h = dst["destination"]["host"]
                    if "." not in h:
                        dst["destination"]["host"] = f"{h}.{r['delegate'].get('namespace', ns)}.svc.cluster.local"
                http.append(d)
        spec["http"] = http
        return spec

    out = [("flagger-0-rest", merged(100, 0), "initialized: primary 100 / canary 0")]
    canary_w = 0
    for w in steps:
        canary_w = w
        out.append((f"flagger-{len(out)}-weight-{w}", merged(100 - w, w), f"advance canary weight {w}"))
    # Max weight reached and analysis passed: Promote copies the spec to the primary, then
    # runPromotionTrafficShift routes all to the primary (scheduler.go 613-636, 519-530).
    out.append((f"flagger-{len(out)}-promoted", merged(100, 0), "promoted: primary (the new spec) 100"))
    out.append((f"flagger-{len(out)}-rollback", merged(100, 0), f"rollback at {canary_w} %: primary 100 / canary 0"))
    return out


# ---- istiod: VirtualService -> Envoy routes ------------------------------------------------------


def cluster_name(dst: dict, vs_ns: str) -> str:
    host = dst["host"]
    if "." not in host:
        host = f"{host}.{vs_ns}.svc.cluster.local"
    port = (dst.get("port") or {}).get("number", SERVICE_PORT)
    # model.BuildSubsetKey: direction|port|subset|host.
    return f"outbound|{port}|{dst.get('subset', '')}|{host}"


def header_matcher(name: str, m: dict) -> dict:
    # translateHeaderMatch (route.go 1203-1220) for the exact/prefix/regex string matches used here.
    if "exact" in m:
        sm = {"exact": m["exact"]}
    elif "prefix" in m:
        sm = {"prefix": m["prefix"]}
    elif "regex" in m:
        sm = {"safe_regex": {"regex": m["regex"]}}
    else:
        raise SystemExit(f"header match {m} not rendered here")
    return {"name": name, "string_match": sm}


def translate(spec: dict, vs_ns: str, legacy: bool) -> list[dict]:
    """BuildHTTPRoutesForVirtualService: each http route, once per match, until a catch-all."""
    out = []
    for r in spec["http"]:
        matches = r.get("match") or [None]
        for m in matches:
            name = r.get("name", "")
            if m and m.get("name"):
                name = f"{name}.{m['name']}"
            match: dict[str, Any] = {"prefix": "/"}
            if m:
                hs = [header_matcher(k, v) for k, v in (m.get("headers") or {}).items()]
                if hs:
                    match["headers"] = sorted(hs, key=lambda h: h["name"])
            dests = r["route"]
            if len(dests) == 1:
                action: dict[str, Any] = {"cluster": cluster_name(dests[0]["destination"], vs_ns)}
            else:
                kept = [d for d in dests if d.get("weight", 0) != 0]
                clusters = [
                    {"name": cluster_name(d["destination"], vs_ns), "weight": d["weight"]} for d in kept
                ]
                if legacy and len(clusters) == 1:
                    # Before istio PR #45658 (Istio < 1.19): "rewrite to a single cluster if there
                    # is only weighted cluster".
                    action = {"cluster": clusters[0]["name"]}
                else:
                    action = {"weighted_clusters": {"clusters": clusters}}
            route = {"name": name, "match": match, "route": action}
            out.append(route)
            if m is None:
                return out  # a catch-all: istiod stops here
    return out


# ---- istiod: EnvoyFilter MERGE -------------------------------------------------------------------


def proto_merge(dst: Message, src: Message) -> None:
    """istio pkg/proto/merge/merge.go mergeMessage, on Envoy's protobuf types."""
    for fd, v in src.ListFields():
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            dmap = getattr(dst, fd.name)
            for k, val in v.items():
                if fd.message_type.fields_by_name["value"].message_type is not None:
                    dmap[k].CopyFrom(val)
                else:
                    dmap[k] = val
        elif fd.is_repeated:
            dlist = getattr(dst, fd.name)
            for item in v:
                if fd.message_type is not None:
                    proto_merge(dlist.add(), item)
                else:
                    dlist.append(item)
        elif fd.message_type is not None:
            sub = getattr(dst, fd.name)
            if fd.message_type.full_name == "google.protobuf.Duration":
                sub.CopyFrom(v)  # ReplaceMergeFn for Duration
            else:
                sub.SetInParent()  # dst.Mutable(fd): sets the field, clearing the oneof's others
                proto_merge(sub, v)
        else:
            setattr(dst, fd.name, v)  # a oneof scalar clears the oneof's others, as dst.Set does


def version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])


def apply_envoyfilter(ef: dict, vhost_name: str, routes: list[dict], proxy_version: str) -> list[dict]:
    spec = ef["spec"]
    out = []
    for r in routes:
        msg = json_format.ParseDict(r, rc.Route())
        for cp in spec["configPatches"]:
            if cp["applyTo"] != "HTTP_ROUTE":
                continue
            match = cp.get("match") or {}
            if match.get("context", "ANY") not in ("ANY", "GATEWAY"):
                continue
            pv = (match.get("proxy") or {}).get("proxyVersion")
            if pv and not re.match(pv, proxy_version):
                continue
            rcm = match.get("routeConfiguration") or {}
            if rcm.get("portNumber") not in (None, GATEWAY_PORT):
                continue
            vh = rcm.get("vhost") or {}
            if vh.get("name") not in (None, vhost_name):
                continue
            rm = vh.get("route") or {}
            if rm.get("name") not in (None, "", r["name"]):
                continue
            if rm.get("action", "ANY") not in ("ANY", "ROUTE"):
                continue
            op = cp["patch"]["operation"]
            if op != "MERGE":
                raise SystemExit(f"operation {op} is not rendered here")
            value = json_format.ParseDict(cp["patch"]["value"], rc.Route())  # strict: unknown fields fail
            proto_merge(msg, value)
        out.append(json_format.MessageToDict(msg, preserving_proto_field_name=True))
    return out


def route_configuration(routes: list[dict], host: str) -> dict:
    vhost = f"{host}:{GATEWAY_PORT}"  # util.DomainName
    rcfg = {
        "name": f"http.{GATEWAY_PORT}",
        "virtual_hosts": [{"name": vhost, "domains": [host, f"{host}:*"], "routes": routes}],
    }
    json_format.ParseDict(rcfg, route_pb2.RouteConfiguration())  # well-formed for Envoy's types
    return rcfg


# ---- main ----------------------------------------------------------------------------------------


def render() -> tuple[dict[str, str], list[dict]]:
    ef = find(load_docs(ENVOYFILTER), "EnvoyFilter")
    argo_vs = find(load_docs(ARGO_ROUTING), "VirtualService", "checkout")
    rollout = find(load_docs(ARGO_ROLLOUT), "Rollout")
    flagger_root = find(load_docs(FLAGGER_ROUTING), "VirtualService")
    flagger_canary = find(load_docs(FLAGGER_CANARY), "Canary")

    runs = [
        (argo_states(argo_vs, rollout), argo_vs),
        (flagger_states(flagger_root, flagger_canary), flagger_root),
    ]
    files: dict[str, str] = {}
    index: list[dict] = []
    for states, vs in runs:
        host = vs["spec"]["hosts"][0]
        ns = vs["metadata"]["namespace"]
        for state, spec, what in states:
            routes = apply_envoyfilter(ef, f"{host}:{GATEWAY_PORT}", translate(spec, ns, False), PROXY_VERSION)
            cfg = route_configuration(routes, host)
            files[f"{state}.yaml"] = dump(cfg, f"{what} (istiod >= 1.19, proxy {PROXY_VERSION})")
            index.append({"state": state, "file": f"{state}.yaml", "what": what, "expect": "accepted"})
    # The hazard, once: Argo at rest rendered by a pre-1.19 istiod, with the patch applied anyway.
    argo_rest = argo_states(argo_vs, rollout)[0][1]
    host = argo_vs["spec"]["hosts"][0]
    legacy = translate(argo_rest, argo_vs["metadata"]["namespace"], True)
    guarded = apply_envoyfilter(ef, f"{host}:{GATEWAY_PORT}", legacy, LEGACY_PROXY_VERSION)
    files["legacy-guarded-rest.yaml"] = dump(
        route_configuration(guarded, host),
        f"at rest, istiod < 1.19 (lone destination as `cluster`), proxy {LEGACY_PROXY_VERSION}: "
        "the proxyVersion guard keeps the patch off",
    )
    index.append(
        {"state": "legacy-guarded-rest", "file": "legacy-guarded-rest.yaml", "expect": "accepted",
         "what": "pre-1.19 rendering at rest, patch not applied (proxyVersion guard)"}
    )
    forced = apply_envoyfilter(ef, f"{host}:{GATEWAY_PORT}", legacy, PROXY_VERSION)
    files["legacy-unguarded-rest.yaml"] = dump(
        route_configuration_unchecked(forced, host),
        "at rest, istiod < 1.19 with the patch forced on: `cluster` replaced by an empty "
        "weighted_clusters (merge.go: Mutable on the other oneof member). Envoy must reject it.",
    )
    index.append(
        {"state": "legacy-unguarded-rest", "file": "legacy-unguarded-rest.yaml", "expect": "rejected",
         "what": "pre-1.19 rendering at rest with the patch applied: weighted_clusters without clusters"}
    )
    return files, index


def route_configuration_unchecked(routes: list[dict], host: str) -> dict:
    return {
        "name": f"http.{GATEWAY_PORT}",
        "virtual_hosts": [{"name": f"{host}:{GATEWAY_PORT}", "domains": [host, f"{host}:*"], "routes": routes}],
    }


def dump(cfg: dict, what: str) -> str:
    head = (
        "# Generated by tools/istio_routes.py from istio/ - do not edit.\n"
        f"# {what}\n"
    )
    return head + yaml.safe_dump(cfg, sort_keys=False, width=100)


def cli(doc: str, render_all, source: str) -> int:
    """`--out DIR` writes what `render_all()` gives (files and the states index), `--check DIR`
    compares; shared by this tool and tools/gateway_routes.py."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--out", type=Path)
    g.add_argument("--check", type=Path)
    args = ap.parse_args()
    files, index = render_all()
    files["states.json"] = json.dumps(index, indent=2) + "\n"
    return write_or_check(files, args.out, args.check, source)


def main() -> int:
    return cli(__doc__, render, "istio/")


def write_or_check(files: dict[str, str], out: Path | None, check: Path | None, source: str) -> int:
    """Write `files` into `out`, or compare them with `check` (also used by tools/gateway_routes.py)."""
    if out:
        out.mkdir(parents=True, exist_ok=True)
        for old in out.glob("*"):
            if old.name not in files:
                old.unlink()
        for name, text in files.items():
            (out / name).write_text(text)
        print(f"wrote {len(files)} files to {out}")
        return 0
    assert check is not None
    bad = 0
    present = {p.name for p in check.glob("*")}
    for name in sorted(present - set(files)):
        print(f"{check / name}: not generated any more")
        bad += 1
    for name, text in files.items():
        p = check / name
        have = p.read_text() if p.exists() else ""
        if have != text:
            bad += 1
            sys.stdout.writelines(difflib.unified_diff(have.splitlines(True), text.splitlines(True), str(p), "generated"))
    if bad:
        print(f"{bad} file(s) differ: run the generator with --out {check}")
        return 1
    print(f"{check}: {len(files)} files up to date with {source}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
