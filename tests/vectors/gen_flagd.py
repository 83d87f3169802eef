"""Regenerate flagd.json: expected versions computed independently of the filter.

Uses Python's mmh3 (murmur3 x86_32, seed 0) and flagd's current `fractional`
bucketing: bucket = (hash * totalWeight) >> 32, first variant whose running
weight sum exceeds the bucket. Run: python3 gen_flagd.py > flagd.json
"""
import json
import mmh3

ROLLOUT = "checkout-2026-11"
SPLITS = {
    "90-10": [["stable", 90], ["canary", 10]],
    "50-30-20": [["stable", 50], ["canary", 30], ["preview", 20]],
    "odd": [["stable", 7], ["zero", 0], ["canary", 3], ["big", 1000003]],
}
KEYS = [f"user-{i}" for i in range(200)] + ["", "alice", "bob", "10.0.0.7", "ü", "a" * 300]


def pick(key, split):
    h = mmh3.hash((ROLLOUT + key).encode("utf-8"), 0, signed=False)
    total = sum(w for _, w in split)
    bucket = (h * total) >> 32
    acc = 0
    for name, w in split:
        acc += w
        if bucket < acc:
            return name, h
    raise AssertionError("unreachable")


out = {"rolloutId": ROLLOUT, "splits": SPLITS, "cases": []}
for k in KEYS:
    case = {"key": k, "hash": pick(k, SPLITS["90-10"])[1]}
    for s, split in SPLITS.items():
        case[s] = pick(k, split)[0]
    out["cases"].append(case)
print(json.dumps(out, indent=1, ensure_ascii=False))
