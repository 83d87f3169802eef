// Times the filter's pure per-request work (bench/core-wasm) in Node's V8, for each
// module given as `label=path`: rounds interleaved, best round per module reported
// (noise from other load only ever adds time). Prints one JSON object.
import { readFileSync } from "node:fs";

const N = 20000;
const ROUNDS = Number(process.env.CORE_WASM_ROUNDS || 15);
const mods = [];
for (const arg of process.argv.slice(2)) {
  const [label, path] = arg.split("=");
  const { instance } = await WebAssembly.instantiate(readFileSync(path), {});
  const run = instance.exports[process.env.CORE_WASM_EXPORT || "run"];
  if (run(10) === 0) throw new Error(`${label}: setup failed`);
  run(N); // warm up: let V8 tier the hot code up
  mods.push({ label, run, best: Infinity });
}
for (let r = 0; r < ROUNDS; r++) {
  for (const m of mods) {
    const t0 = process.hrtime.bigint();
    m.run(N);
    const ns = Number(process.hrtime.bigint() - t0) / N;
    m.best = Math.min(m.best, ns);
  }
}
console.log(JSON.stringify(Object.fromEntries(mods.map((m) => [m.label, Math.round(m.best)]))));
