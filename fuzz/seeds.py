#!/usr/bin/env python3
"""Regenerates the committed seed corpus, fuzz/corpus/<target>/ (small, hand-made
inputs in each target's input format; see the doc comment of each target), and the
boundary regression seeds of the targets that have no found-bug input of their own
(fuzz/regressions/<target>/, see the end of this file).

Run from anywhere: `python3 fuzz/seeds.py`. Deterministic; existing seed files
with the same names are overwritten, nothing else is touched.
"""
import base64
import hashlib
import os
import struct
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TESTDATA = os.path.join(ROOT, "filter", "testdata")


def write(target, name, data, kind="corpus"):
    d = os.path.join(HERE, kind, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def fixture(name):
    with open(os.path.join(TESTDATA, name), "rb") as f:
        return f.read()


def pem_to_der(pem):
    body = b"".join(l for l in pem.strip().splitlines() if not l.startswith(b"-----"))
    return base64.b64decode(body)


# ---- config -------------------------------------------------------------------------------
DEMO = ('{"rolloutId":"checkout-2026-11","versions":[{"name":"stable","weight":90},'
        '{"name":"canary","weight":10}],"routeHeader":"x-rollout-version","stickyKeys":'
        '[{"header":"x-user-id"},{"cookie":"uid"},{"sourceAddress":true}],"override":'
        '{"header":"x-rollout-pin","query":"rollout-version","trustedPeers":["*"]},'
        '"responseHeaders":{"version":"x-rollout-version","traceId":"x-trace-id"}}')
configs = {
    "demo.json": DEMO,
    "minimal.json": '{"rolloutId":"r","versions":[{"name":"v1","weight":1}]}',
    "trace.json": '{"rolloutId":"r","versions":[{"name":"v1","weight":1}],"trace":{"enabled":false,'
                  '"newSpan":true,"sampled":false,"baggage":true,"baggagePrefix":"acme-"},"rolloutIdHeader":"X-Rid",'
                  '"responseHeaders":{"version":"x-v","traceId":"x-t"}}',
    "certificate.json": '{"rolloutId":"checkout-2026-11","versions":[{"name":"stable","weight":90},'
                        '{"name":"canary","weight":10}],"stickyKeys":[{"peerIdentity":true},{"header":"x-user-id"}],'
                        '"override":{"header":"x-rollout-pin","query":"rollout-version","trustedPeers":'
                        '["spiffe://cluster.local/ns/qa/*","*.qa.example.com","*"]},'
                        '"certificate":{"labelOid":"1.3.6.1.4.1.55555.1.1","source":"xfcc","cacheSize":10}}',
    "issue-cookie.json": '{"rolloutId":"r","versions":[{"name":"a","weight":1},{"name":"b","weight":1}],'
                         '"stickyKeys":[{"header":"x-user-id"},{"cookie":"sid","issue":true,"maxAge":86400}]}',
    "max-weight.json": '{"rolloutId":"r","versions":[{"name":"a","weight":2147483646},{"name":"b","weight":1}]}',
    "sixteen.json": '{"rolloutId":"r","versions":[%s]}' % ",".join(
        '{"name":"v%d","weight":%d}' % (i, i) for i in range(16)),
    "bad-weight.json": '{"rolloutId":"r","versions":[{"name":"a","weight":-1.5e3}]}',
    "bad-unknown.json": '{"rolloutId":"r","versions":[{"name":"a","weight":1}],"stickyKey":[],"override":{"cookie":"x"}}',
    "bad-escape.json": '{"rolloutId":"r\\u00e9","versions":[{"name":"a\\n","weight":1}],"routeHeader":"Host"}',
    "bad-trailing.json": '{"rolloutId":"r","versions":[{"name":"a","weight":1}]} x',
    "long-key.json": '{"rolloutId":"%s","versions":[{"name":"%s","weight":1}],"trace":{"baggagePrefix":"%s"}}'
                     % ("r" * 128, "v" * 63, "p" * 128),
    "old-tracestate-key.json": '{"rolloutId":"r","versions":[{"name":"v1","weight":1}],"trace":{"tracestateKey":"acme@rollout"}}',
}
for name, text in configs.items():
    write("config", name, text)

# ---- trace --------------------------------------------------------------------------------
TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def trace_seed(flags, lines, random=bytes(range(1, 25))):
    return bytes([flags]) + random + b"\n".join(lines)


traces = {
    "fresh": trace_seed(2, []),
    "valid": trace_seed(0, [b"p" + TP.encode(), b"svendor=opaque,congo=t61rcWkgMzE"]),
    "new-span": trace_seed(3, [b"p" + TP.encode(), b"srollout=old:stable, a=1,,b=2", b"sc=3"]),
    "version-cc": trace_seed(0, [b"pcc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-extra"]),
    "bad-upper": trace_seed(0, [b"p00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", b"sa=1"]),
    "zero-id": trace_seed(0, [b"p00-00000000000000000000000000000000-00f067aa0ba902b7-01"]),
    "duplicate": trace_seed(0, [b"p" + TP.encode(), b"p" + TP.encode(), b"sa=1"]),
    "at-keys": trace_seed(1, [b"p" + TP.encode(), b"sfoo@=1,foo@@bar=2,foo@bar@baz=3,1a@b=4"]),
    "bad-member": trace_seed(1, [b"p" + TP.encode(), b"sa=1,foo=bar=baz", b"sb=2"]),
    "many": trace_seed(1, [b"p" + TP.encode(), b"s" + b",".join(b"k%d=v%d" % (i, i) for i in range(33))]),
    "long": trace_seed(1, [b"p" + TP.encode(), b"s" + b",".join(b"k%d=%s" % (i, b"x" * 250) for i in range(5))]),
    "baggage": trace_seed(4, [b"p" + TP.encode(), b"buserId=Am%C3%A9lie;p, lane=canary",
                              b"b rollout.checkout-2026-11 = forged", b"vcan ary%"]),
    "baggage-key": trace_seed(0, [b"krollout.other", b"vstable", b"ba=1,rollout.other=x,b=2"]),
    "baggage-full": trace_seed(0, [b"b" + b",".join(b"k%d=v" % i for i in range(64))]),
    "baggage-bytes": trace_seed(0, [b"ba=" + b"x" * 8170]),
    "zero-random": bytes(25) + b"p00-ffffffffffffffffffffffffffffffff-ffffffffffffffff-ff",
}
for name, data in traces.items():
    write("trace", name, data)

# ---- certificate --------------------------------------------------------------------------
for i, name in enumerate(["spiffe.pem", "uri-label-a.pem", "othername-utf8.pem", "othername-ia5.pem",
                          "dns.pem", "duplicate.pem", "bad-json.pem", "ca.pem"]):
    pem = fixture(name)
    stem = name[:-4]
    write("certificate", "pem-" + stem, b"\x01" + pem)
    if i < 5:
        write("certificate", "der-" + stem, b"\x00" + pem_to_der(pem))
write("certificate", "der-spiffe-fixture", b"\x00" + fixture("spiffe.der"))
der = fixture("spiffe.der")
write("certificate", "built-spiffe", b"\x03\x40" + der)
write("certificate", "built-utf8", b"\x03\xff" + pem_to_der(fixture("othername-utf8.pem")))
spiffe_pem = fixture("spiffe.pem")
digest = fixture("spiffe.sha256").strip()
cert = urllib.parse.quote(spiffe_pem.decode(), safe="")
write("certificate", "xfcc-match",
      b"\x02" + digest + b"\nBy=spiffe://cluster.local/ns/a/sa/b;Hash=" + digest + b';Cert="' + cert.encode()
      + b'";Subject="O=x,CN=y";URI=spiffe://cluster.local/ns/qa/sa/tester')
write("certificate", "xfcc-two",
      b"\x02" + digest + b"\nHash=00;Cert=%2D,By=x;hash=" + digest.upper() + b";cert=" + cert.encode())
write("certificate", "xfcc-quoted", b'\x02ab\nHash="a\\"b";Cert="x";By=","')
write("certificate", "pattern-spiffe", b"\x04spiffe://cluster.local/ns/qa/*\nspiffe://cluster.local/ns/qa/sa/tester")
write("certificate", "pattern-dns", b"\x04*.qa.example.com\nAPI.qa.example.com")
write("certificate", "pattern-tail", b"\x04spiffe://*/ns/*\nspiffe://td/ns/a/b/c")
write("certificate", "oid", b"\x051.3.6.1.4.1.55555.1.1")
write("certificate", "oid-big", b"\x052.39.18446744073709551615.0")
# Mode 6: a label in a certificate the target builds (3: JSON otherName, 1: raw otherName, 0: URI).
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
labels = {
    "label-json-design": (3, '{"rolloutId":"checkout-2026-11","canaryWeight":30,"traceId":"%s"}' % TRACE),
    "label-json-ambiguous": (3, '{"rolloutId":"r","weight":1,"canaryWeight":2,"version":"v"}'),
    "label-json-trace-only": (3, '{"rolloutId":"r","traceId":"%s","weight":null}' % TRACE),
    "label-raw": (1, "eyJyb2xsb3V0SWQiOiJyIiwidmVyc2lvbiI6InYifQ"),
    "label-uri-a": (0, "rollout://checkout-2026-11?version=canary&canaryWeight=30&traceId=%s" % TRACE),
    "label-uri-b": (0, "rollout=checkout-2026-11;weight=5;canaryWeight=5"),
    "label-uri-bad-trace": (0, "rollout=r;traceId=%s" % TRACE.upper()),
}
for name, (style, text) in labels.items():
    write("certificate", name, bytes([6, style]) + text.encode())

# ---- keys ---------------------------------------------------------------------------------
def keys_seed(name, value):
    return bytes([len(name)]) + name + value


keyseeds = {
    "cookie": keys_seed(b"uid", b"a=1; uid=alice;b=2"),
    "cookie-quoted": keys_seed(b"uid", b'uid="q q"; uid=2'),
    "cookie-odd": keys_seed(b"uid", b";;; ;uid;uid=\xff\xfe; =x"),
    "query": keys_seed(b"rollout-version", b"/x?a=1&rollout-version=canary&b#frag"),
    "query-repeat": keys_seed(b"v", b"/x?v=1&v=2&a=%41&v#f?v=3"),
    "query-empty-name": keys_seed(b"", b"/x?&=&a=1&"),
    "query-fragment-first": keys_seed(b"v", b"/x#?v=1"),
    "source-v4": keys_seed(b"", b"10.0.0.7:51234"),
    "source-v6": keys_seed(b"", b"[2001:db8::1]:8080"),
    "source-bare-v6": keys_seed(b"", b"2001:db8::1"),
}
for name, data in keyseeds.items():
    write("keys", name, data)

# ---- headers ------------------------------------------------------------------------------
def serialize(pairs):
    out = struct.pack("<I", len(pairs))
    for k, v in pairs:
        out += struct.pack("<II", len(k), len(v))
    for k, v in pairs:
        out += k + b"\0" + v + b"\0"
    return out


req = [(b":authority", b"example.com"), (b":path", b"/a?rollout-version=canary"), (b":method", b"GET"),
       (b"cookie", b"uid=alice"), (b"x-user-id", b"\xff\xfe"), (b"x-user-id", b"")]
write("headers", "request", serialize(req))
write("headers", "empty", serialize([]))
write("headers", "truncated", serialize(req)[:-7])
write("headers", "huge-count", b"\xff\xff\xff\xff\x01\x00\x00\x00")
bad = bytearray(serialize([(b"a", b"1")]))
bad[8] = 0xff
write("headers", "bad-size", bytes(bad))

# ---- decision -----------------------------------------------------------------------------
def decision_seed(mask, random, lines):
    return bytes([mask]) + struct.pack("<I", random) + b"\n".join(lines)


decisions = {
    "override-header": decision_seed(0b00101, 7, [b"canary", b"", b"user-1"]),
    "override-query": decision_seed(0b00010, 7, [b"", b"/a?x=1&rollout-version=canary"]),
    "unknown-overrides": decision_seed(0b00111, 7, [b" CANARY ", b"/?rollout-version=nope", b"user-1"]),
    "cookie": decision_seed(0b01100, 7, [b"", b"", b"", b"a=b; uid=carol"]),
    "source": decision_seed(0b10000, 7, [b"", b"", b"", b"", b"10.0.0.7:4242"]),
    "random": decision_seed(0, 0xffffffff, []),
    "dark-query": decision_seed(0b0100010, 1, [b"", b"/?v=dark"]),
    "dark-trusted-peer": decision_seed(0b10100001, 1, [b"dark", b"", b"", b"", b"",
                                                      b"spiffe://cluster.local/ns/qa/sa/tester", b""]),
    "dark-untrusted-dns": decision_seed(0b10100011, 1, [b"canary", b"/?v=canary", b"", b"", b"",
                                                       b"", b"api.prod.example.com"]),
    "strict-pin-label": decision_seed(0b11000100, 9, [b"", b"", b"bob", b"", b"",
                                                     b"spiffe://x/y", b"", b"\x00\x02canary"]),
    "strict-weight-label": decision_seed(0b11000100, 9, [b"", b"", b"bob", b"", b"",
                                                        b"", b"web.qa.example.com", b"\x1e\x01", b"\x32\x05x"]),
    "strict-trace-label": decision_seed(0b11000100, 9, [b"", b"", b"bob", b"", b"",
                                                       b"spiffe://x/y", b"", b"\x00\x08", b"\x1e\x0bcanary"]),
}
for name, data in decisions.items():
    write("decision", name, data)

# ---- lane ---------------------------------------------------------------------------------
# Byte 0 flags (1 set, 2 follow, 4 inbound, 8 trusted, 16 trust everyone, 32 also the decision
# member), byte 1 the decided version (mod 3), then `\n`-separated baggage values.
def lane_seed(flags, version, values):
    return bytes([flags, version]) + b"\n".join(values)


lanes = {
    "follow": lane_seed(0b000111, 1, [b"rollout-lane=canary,userId=alice"]),
    "encoded": lane_seed(0b010011, 1, [b"rollout-lane = r2026%2D11 ;p=1"]),
    "unknown-passes": lane_seed(0b100011, 2, [b"rollout-lane=blue,rollout.shop=x"]),
    "untrusted-inbound": lane_seed(0b100101, 0, [b"a=1 ;p", b"rollout-lane=canary, b=%20"]),
}
for name, data in lanes.items():
    write("lane", name, data)


# ---- regressions --------------------------------------------------------------------------
# One seed for each target that no found bug gave one: an input on a boundary of the target's
# model, where a change to the code or to the model is most likely to break. `make
# fuzz-regressions` replays them (and every fuzz/artifacts/<target>/ file) on every smoke run.
SPAN = TP[:-3]  # traceparent without its flags
regressions = {
    # Version 00 is exactly 55 chars: a suffix makes it invalid (a future version may have one).
    ("trace", "version-00-with-suffix"): trace_seed(0, [b"p" + SPAN.encode() + b"-01-extra", b"sa=1"]),
    # Two tracestate headers with a key in both: the first header's member is the one kept.
    ("trace", "key-in-two-tracestate-headers"): trace_seed(1, [b"p" + TP.encode(), b"sa=1,b=2", b"sa=3,c=4"]),
    # A cookie whose name ends with the wanted one comes first: `uid` is `good`, not `evil`.
    ("keys", "cookie-name-suffix-first"): keys_seed(b"uid", b"xuid=evil; uid=good"),
    # A parameter whose name starts with the wanted one; the name again after the fragment.
    ("keys", "query-name-prefix-first"): keys_seed(b"v", b"/p?vv=1&v=2&v=3#v=4"),
    # The map's last NUL cut off: it reads as the pairs before the last one.
    ("headers", "missing-last-nul"): serialize(req)[:-1],
    # DARK: the uid cookie is there but empty, so the next key, the peer's identity, decides.
    ("decision", "empty-cookie-falls-to-peer-identity"): decision_seed(
        0b10101000, 3, [b"", b"", b"", b"uid=", b"", b"spiffe://cluster.local/ns/prod/sa/web", b""]),
    # A trusted lane twice: the first member (no version here) is the lane, passed on unchanged.
    ("lane", "first-lane-member-wins"): lane_seed(0b001111, 2, [b"rollout-lane=blue, rollout-lane=canary"]),
}
for (target, name), data in regressions.items():
    write(target, name, data, kind="regressions")
