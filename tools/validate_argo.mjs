// Strict schema validation of Argo Rollouts, Gateway API and core Service manifests, offline.
//
// stdin:  [{ "name": "...", "doc": { apiVersion, kind, ... } }, ...]   (YAML already parsed)
// stdout: [{ "name": "...", "error": null | "reason" }, ...]
//
// The schemas are @kubernetes-models/argo-rollouts and @kubernetes-models/gateway-api (pinned in
// tools/package.json), generated from Argo Rollouts' Go types and the Gateway API's CRDs; the pod
// template and Services are checked by kubernetes-models' core/v1 schemas. Its
// validators (compiled AJV code) accept unknown properties, so we add strictness without reading
// their internals: the document is wrapped in Proxies that record which keys the validator reads.
// A compiled validator reads every property its schema declares (`data.foo !== undefined`), and
// enumerates the keys of maps (labels, resource limits). After validation, any key of an object
// that was neither read nor enumerated is one the schema does not know: a typo.
import { Rollout, AnalysisTemplate, ClusterAnalysisTemplate } from "@kubernetes-models/argo-rollouts/argoproj.io/v1alpha1";
import { Gateway, HTTPRoute } from "@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1";
import { Service } from "kubernetes-models/v1";

const MODELS = {
  "argoproj.io/v1alpha1 Rollout": Rollout,
  "argoproj.io/v1alpha1 AnalysisTemplate": AnalysisTemplate,
  "argoproj.io/v1alpha1 ClusterAnalysisTemplate": ClusterAnalysisTemplate,
  "gateway.networking.k8s.io/v1 Gateway": Gateway,
  "gateway.networking.k8s.io/v1 HTTPRoute": HTTPRoute,
  "v1 Service": Service,
};

function track(value, path, records) {
  if (value === null || typeof value !== "object") return value;
  const rec = { path, obj: value, read: new Set(), enumerated: false };
  records.push(rec);
  const copy = Array.isArray(value)
    ? value.map((v, i) => track(v, `${path}[${i}]`, records))
    : Object.fromEntries(Object.entries(value).map(([k, v]) => [k, track(v, `${path}.${k}`, records)]));
  return new Proxy(copy, {
    get(t, p, r) {
      if (typeof p === "string") rec.read.add(p);
      return Reflect.get(t, p, r);
    },
    has(t, p) {
      if (typeof p === "string") rec.read.add(p);
      return Reflect.has(t, p);
    },
    ownKeys(t) {
      rec.enumerated = true;
      return Reflect.ownKeys(t);
    },
  });
}

// Argo's trafficRouting.plugins values are opaque to its schema (each plugin parses its own), so
// the Gateway API plugin's config is checked here against its Go type, GatewayAPITrafficRouting
// (argoproj-labs/rollouts-plugin-trafficrouter-gatewayapi pkg/plugin/types.go:24-73).
const ROUTE_REF = { name: "string", useHeaderRoutes: "boolean" };
const GATEWAY_API_PLUGIN = {
  httpRoute: "string", grpcRoute: "string", tcpRoute: "string", tlsRoute: "string", namespace: "string",
  httpRoutes: [ROUTE_REF], grpcRoutes: [ROUTE_REF], tcpRoutes: [ROUTE_REF], tlsRoutes: [ROUTE_REF],
  disableInProgressLabel: "boolean", inProgressLabelKey: "string", inProgressLabelValue: "string",
};
const PLUGINS = { "argoproj-labs/gatewayAPI": GATEWAY_API_PLUGIN };
const PLUGINS_PATH = "spec.strategy.canary.trafficRouting.plugins";

function checkShape(value, shape, path, problems) {
  if (Array.isArray(shape)) {
    if (!Array.isArray(value)) return problems.push(`${path} must be a list`);
    value.forEach((v, i) => checkShape(v, shape[0], `${path}[${i}]`, problems));
  } else if (typeof shape === "object") {
    if (value === null || typeof value !== "object" || Array.isArray(value)) return problems.push(`${path} must be an object`);
    for (const [k, v] of Object.entries(value)) {
      if (!(k in shape)) problems.push(`unknown field(s): ${path}.${k}`);
      else checkShape(v, shape[k], `${path}.${k}`, problems);
    }
    if (shape === ROUTE_REF && typeof value.name !== "string") problems.push(`${path}.name is required`);
  } else if (typeof value !== shape) {
    problems.push(`${path} must be a ${shape}`);
  }
}

function checkPlugins(doc, problems) {
  const plugins = doc?.spec?.strategy?.canary?.trafficRouting?.plugins;
  if (plugins === undefined) return;
  for (const [name, cfg] of Object.entries(plugins)) {
    if (!PLUGINS[name]) problems.push(`${PLUGINS_PATH}: no schema for plugin ${name}`);
    else checkShape(cfg, PLUGINS[name], `${PLUGINS_PATH}.${name}`, problems);
  }
}

function check(doc) {
  const model = MODELS[`${doc.apiVersion} ${doc.kind}`];
  if (!model) return `no schema for ${doc.apiVersion} ${doc.kind}`;
  const records = [];
  const tracked = track(doc, "", records);
  const problems = [];
  try {
    model.prototype.validate.call(tracked);
  } catch (e) {
    const details = (e.errors || [])
      .map((x) => `${x.instancePath || "/"} ${x.message || x.keyword}`)
      .join("; ");
    problems.push(details || String(e.message || e));
  }
  // The validators run with allErrors, so the read-set is complete even when a check failed.
  const unknown = [];
  for (const rec of records) {
    if (Array.isArray(rec.obj) || rec.enumerated) continue;
    for (const key of Object.keys(rec.obj)) {
      if (!rec.read.has(key)) unknown.push(rec.path ? `${rec.path.slice(1)}.${key}` : key);
    }
  }
  if (doc.kind === "Rollout") checkPlugins(doc, problems);
  // Report the outermost unknown key only, not everything under it (plugins: checked above).
  const outermost = unknown.filter((u) => !u.startsWith(`${PLUGINS_PATH}.`)).filter(
    (u) => !unknown.some((o) => o !== u && (u.startsWith(`${o}.`) || u.startsWith(`${o}[`))),
  );
  if (outermost.length) problems.push(`unknown field(s): ${outermost.join(", ")}`);
  return problems.length ? problems.join("; ") : null;
}

let input = "";
process.stdin.setEncoding("utf8");
for await (const chunk of process.stdin) input += chunk;
const out = JSON.parse(input).map(({ name, doc }) => ({ name, error: check(doc) }));
process.stdout.write(JSON.stringify(out));
