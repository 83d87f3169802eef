"""Regenerate flagd-v3.json: `fractional` v3 vectors computed independently of the filter.

flagd-testbed (release 3.9.0) publishes no @fractional-v3 vectors yet. These follow flagd's
accepted design record (open-feature/flagd docs/architecture-decisions/
fractional-non-string-rand-units.md): the bucketing value is encoded as RFC 8949 deterministic
CBOR and hashed with murmur3 x86_32 (seed 0); the shorthand hashes the CBOR array
[flagKey, targetingKey]. Method: JSON numbers are read as binary64 (as flagd and flagd-core
read them), normalized as the record says (a whole number in [-2^63, 2^64-1] becomes an
integer, -0.0 becomes 0), then encoded by Python's cbor2 in canonical mode (shortest float,
sorted map keys) and hashed by mmh3. Bucket: (hash * totalWeight) >> 32, first variant whose
running weight sum exceeds it.

Run: pip install cbor2==6.3.0 mmh3==5.3.1; python3 gen_flagd_v3.py > flagd-v3.json
"""
import json

import cbor2
import mmh3

FLAG_KEY = "checkout-v3"
SPLIT = [["on", 10], ["off", 90]]


def normalize(v):
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, float):
        if v.is_integer() and -(2**63) <= v <= 2**64 - 1:
            return int(v)
        return v
    if isinstance(v, list):
        return [normalize(x) for x in v]
    if isinstance(v, dict):
        return {k: normalize(x) for k, x in v.items()}
    raise TypeError(v)


def encode(v):
    return cbor2.dumps(normalize(v), canonical=True)


def h(b):
    return mmh3.hash(b, 0, signed=False)


def pick(hash_, split):
    total = sum(w for _, w in split)
    bucket = (hash_ * total) >> 32
    acc = 0
    for name, w in split:
        acc += w
        if bucket < acc:
            return name
    raise AssertionError


# Bucketing values as JSON text, read as binary64 numbers.
VALUES = [
    '"alice"', '""', '"\\u00fc\\u00df"', '"' + "x" * 24 + '"', '"' + "y" * 300 + '"',
    "0", "1", "23", "24", "255", "256", "65535", "65536", "4294967296", "-1", "-24", "-25", "-1000",
    "1.0", "-0.0", "1e19", "18446744073709551615", "-9223372036854775808", "9007199254740993",
    "1.5", "-4.1", "0.1", "65504.5", "100000.5", "3.4028234663852886e38", "5.9604644775390625e-8",
    "1e300", "-1e-300", "1.0e+176",
    "true", "false",
    '{"b": 1, "aa": 2, "a": 3}', '{"id": 12345, "tier": "gold", "beta": true}',
    '{"nested": {"z": [1, 2.5, "x", null], "y": {}}, "": 0}',
]


def main():
    values = []
    for text in VALUES:
        v = json.loads(text, parse_int=float)
        b = encode(v)
        values.append({"json": text, "cbor": b.hex(), "hash": h(b)})
    shorthand = []
    for i in list(range(100)) + ["alice", "bob", "\u00fc", "a" * 30]:
        tk = f"user-{i}" if isinstance(i, int) else i
        b = encode([FLAG_KEY, tk])
        shorthand.append({"targetingKey": tk, "cbor": b.hex(), "hash": h(b), "variant": pick(h(b), SPLIT)})
    cat = []
    for i in range(50):
        email = f"u{i}@example.com"
        b = encode(FLAG_KEY + email)
        cat.append({"email": email, "hash": h(b), "variant": pick(h(b), SPLIT)})
    out = {
        "method": "RFC 8949 deterministic CBOR by Python cbor2 6.3.0 (canonical=True) after the "
        "design record's number normalization, murmur3 x86_32 seed 0 by mmh3 5.3.1",
        "flagKey": FLAG_KEY,
        "split": SPLIT,
        "values": values,
        "shorthand": shorthand,
        "cat": cat,
    }
    print(json.dumps(out, indent=1, ensure_ascii=False))


main()
