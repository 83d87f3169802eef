// OpenFeature's own flagd evaluator (@openfeature/flagd-core), as the e2e test's reference.
// stdin: {"flagSet": <flagd flag-set document>, "cases": [{"flag": KEY, "context": {...}}]}
// stdout: [{"variant": KEY or null, "reason": REASON}], one per case, in order.
'use strict';
const { FlagdCore } = require('@openfeature/flagd-core');

const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const core = new FlagdCore();
core.setConfigurations(JSON.stringify(input.flagSet));
const out = input.cases.map(({ flag, context }) => {
  const r = core.resolve(typeofDefault(flag), flag, defaultFor(flag), context);
  return { variant: r.variant ?? null, reason: r.reason, errorCode: r.errorCode ?? null };
});
process.stdout.write(JSON.stringify(out));

// The flag's value type decides which resolver applies (a boolean flag is resolved as one).
function typeofDefault(flag) {
  const v = Object.values(input.flagSet.flags[flag].variants)[0];
  return typeof v === 'boolean' ? 'boolean' : typeof v === 'number' ? 'number' : typeof v === 'string' ? 'string' : 'object';
}
function defaultFor(flag) {
  return { boolean: false, number: 0, string: '', object: {} }[typeofDefault(flag)];
}
