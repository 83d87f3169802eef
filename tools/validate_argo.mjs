// Strict schema validation of Argo Rollouts manifests, offline.
//
// stdin:  [{ "name": "...", "doc": { apiVersion, kind, ... } }, ...]   (YAML already parsed)
// stdout: [{ "name": "...", "error": null | "reason" }, ...]
//
// The schemas are @kubernetes-models/argo-rollouts (pinned in tools/package.json), generated from
// Argo Rollouts' Go types; the pod template is checked by kubernetes-models' core/v1 schemas. Its
// validators (compiled AJV code) accept unknown properties, so we add strictness without reading
// their internals: the document is wrapped in Proxies that record which keys the validator reads.
// A compiled validator reads every property its schema declares (`data.foo !== undefined`), and
// enumerates the keys of maps (labels, resource limits). After validation, any key of an object
// that was neither read nor enumerated is one the schema does not know: a typo.
import { Rollout, AnalysisTemplate, ClusterAnalysisTemplate } from "@kubernetes-models/argo-rollouts/argoproj.io/v1alpha1";

const MODELS = { Rollout, AnalysisTemplate, ClusterAnalysisTemplate };

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

function check(doc) {
  if (doc.apiVersion !== "argoproj.io/v1alpha1" || !MODELS[doc.kind]) {
    return `no schema for ${doc.apiVersion} ${doc.kind}`;
  }
  const records = [];
  const tracked = track(doc, "", records);
  const problems = [];
  try {
    MODELS[doc.kind].prototype.validate.call(tracked);
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
  // Report the outermost unknown key only, not everything under it.
  const outermost = unknown.filter(
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
