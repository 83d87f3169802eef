#!/usr/bin/env python3
"""The bench rows and the Envoy each runs in, shared by `make bench` (bench/run.py)
and `make bench-instructions` (bench/instructions.py), so both measure the same
configurations.

A row is one Envoy (1 worker: --concurrency 1, --use-dynamic-base-id) built from
bench/envoy.template.yaml on free 127.0.0.1 ports. Before measuring, each Envoy is
probed: the route a known key takes (flagd vectors: alice -> canary, carol ->
stable), whether a traceparent reaches the upstream, whether a certificate label
decides. A feature the built filter does not have is reported in the row's note,
never faked: if the filter rejects a top-level field of a row's config
(bench/configs/*.json), the field is dropped, Envoy restarted, and the note says so.

Environment: ENVOY, BENCH_WASM_RUNTIME, BENCH_NICE, BENCH_PIN (see below),
BENCH_HOSTCALL_REPEAT (10: calls per request in the h-* rows).
Python standard library only.
"""

from __future__ import annotations

import fcntl
import glob
import http.client
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
# This run's files (Envoy configs and logs, certificates): private, so runs never share them.
WORK = ROOT / "target" / "bench" / f"run-{os.getpid()}"
GIB = 1 << 30
ROLLOUT_ID = "checkout-2026-11"
LABEL_URI = f"rollout://{ROLLOUT_ID}?version=canary"
SPIFFE_ID = "spiffe://bench.local/ns/bench/sa/client"
LOAD_KEY = "alice"  # flagd vectors: alice -> canary, carol -> stable (90/10)
LOCK = ROOT / "target" / "bench" / ".lock"
LOCK_WAIT_S = 1200


def env(name: str, default: str) -> str:
    return os.environ.get(name) or default


def path_env(name: str, default: str) -> Path:
    """A path from the environment; relative ones are relative to the repository."""
    p = Path(env(name, default))
    return p if p.is_absolute() else ROOT / p


ENVOY = env("ENVOY", str(ROOT / ".venv" / "bin" / "envoy"))
# BENCH_NICE=-10 (root only): run Envoy and the load tools at a higher priority than the rest of a
# shared machine. Off by default.
NICE = ["nice", "-n", os.environ["BENCH_NICE"]] if os.environ.get("BENCH_NICE") else []
# BENCH_PIN=1 (default with 2+ CPUs and taskset): Envoy on the last CPU, the load tool on the others,
# so the two never take turns on one core and the scheduler does not move them.
_CPUS = sorted(os.sched_getaffinity(0))
_PIN = env("BENCH_PIN", "1") == "1" and len(_CPUS) >= 2 and shutil.which("taskset") is not None
PIN_ENVOY = ["taskset", "-c", str(_CPUS[-1])] if _PIN else []
PIN_LOAD = ["taskset", "-c", ",".join(map(str, _CPUS[:-1]))] if _PIN else []
# The wasm runtime of every wasm row. The PyPI Envoy 1.40 build has V8 only: wamr and wasmtime
# fail with "Envoy was compiled without support for it".
RUNTIME = env("BENCH_WASM_RUNTIME", "envoy.wasm.runtime.v8")


@dataclass
class Row:
    id: str
    title: str
    filter: str  # none | lua | noop | rollout | rollout-speed | rollout-altN (a key of wasm_files)
    tls: bool = False
    config: str | None = None  # file under bench/configs/
    probe: str | None = None  # no-op filter only: `<call>*<n>`, host calls it makes per request
    expect_split: bool = False  # the row routes alice -> canary, carol -> stable
    probe_cert: bool = False
    script: str = "rollout.lua"  # Lua rows: the file under bench/lua/
    # Filled while running:
    envoy: "Envoy | None" = None
    notes: list[str] = field(default_factory=list)
    failed: str | None = None
    rps: list[float] = field(default_factory=list)
    p50_us: list[float] = field(default_factory=list)
    p99_us: list[float] = field(default_factory=list)
    cpu_us: list[float] = field(default_factory=list)  # Envoy CPU time per request
    wasm_us: list[float] = field(default_factory=list)  # of which in wasm code (perf samples)
    profile: list[dict[str, float]] = field(default_factory=list)  # per round: µs/request by symbol
    mem_start: list[int] | None = None
    mem_end: list[int] | None = None
    rq_start: int = 0
    rq_end: int = 0
    missing: str | None = None  # a feature the row is meant to measure is not in the build

    @property
    def baselines(self) -> tuple[str, str]:
        return ("a-mtls", "b-mtls") if self.tls else ("a", "b")

    def label(self) -> str:
        return f"({self.id})"



# Calls per request in the h-* rows that price one kind of host call against (b).
HOSTCALL_REPEAT = max(1, int(env("BENCH_HOSTCALL_REPEAT", "10")))
HOSTCALLS = ("header_pairs", "get_header", "set_header", "clear_route_cache", "property_duration",
             "property_source", "property_code", "counter", "histogram", "response_status")
# How many of each the filter makes per request in rows (c) and (f) (counters are batched per tick;
# (f) sets route, rollout-id, a fresh traceparent (the load sends none) and baggage).
HOSTCALLS_PER_REQUEST = {"header_pairs": (1, 1), "set_header": (2, 4), "clear_route_cache": (0, 0),
                         "response_status": (1, 1), "property_duration": (1, 1), "histogram": (1, 1)}
# Pairs of rows whose difference is reported, and what the difference is.
ATTRIBUTION = (("f", "h-seq_f", "the filter's own work: (f) over the same host calls without logic"),
               ("c", "h-seq_c", "the filter's own work on the sticky path"),
               ("h-seq_f", "b", "the host calls of (f) themselves: the floor over a no-op filter"),
               ("f", "e-f", "the full product against the like-for-like Lua filter"))


def bench_rows(smoke: bool = False, hostcalls: bool = True, alt_wasms: list[Path] | None = None) -> list[Row]:
    """Every row, in report order (fresh Row objects: a row collects its results as it runs).

    hostcalls: rows (h-<call>), the no-op filter making one kind of host call HOSTCALL_REPEAT times per
    request, and the floor rows (h-seq_c)/(h-seq_f). alt_wasms: (c) and (f) with other builds of the
    filter (profile or code experiments), named (c-alt1), (f-alt1)..."""
    rows = [
        Row("a", "no filter, header-match routing", "none"),
        Row("b", "no-op Rust proxy-wasm filter", "noop"),
        Row("c", "rollout-filter, sticky-hash path", "rollout", config="c-sticky.json", expect_split=True),
        Row("c-o3", "(c) with the opt-level 3 build (speed over size; not shipped)", "rollout-speed",
            config="c-sticky.json", expect_split=True),
        Row("c-1000", "(c) as one of 1,000 rollouts chosen by host", "rollout", config="c-1000.json",
            expect_split=True),
        Row("e", "Lua: same header hash + route header", "lua", expect_split=True),
        Row("f", "rollout-filter, full product (metrics + trace)", "rollout", config="f-full.json",
            expect_split=True),
        Row("e-f", "Lua: like-for-like with (f) (override, sticky hash, route + rollout-id headers, "
            "traceparent, baggage; no metrics)", "lua", expect_split=True, script="rollout-full.lua"),
        Row("a-mtls", "(a) over mTLS", "none", tls=True),
        Row("b-mtls", "(b) over mTLS", "noop", tls=True),
        Row("c-mtls", "(c) over mTLS (same-TLS hash path)", "rollout", tls=True, config="c-mtls.json",
            expect_split=True),
        Row("d", "rollout-filter, certificate-label path (mTLS)", "rollout", tls=True, config="d-cert-label.json",
            expect_split=True, probe_cert=True),
        Row("c-guard", "(c) with the canary guard on (defaults)", "rollout", config="c-guard.json",
            expect_split=True),
        Row("c-state", "(c) with filterState (the decision as Envoy filter state)", "rollout",
            config="c-state.json", expect_split=True),
    ]
    if hostcalls:
        # The smoke run keeps one priced call and one floor row, enough to keep both probe paths working.
        calls = ("header_pairs",) if smoke else HOSTCALLS
        rows += [Row(f"h-{c}", f"(b) + {HOSTCALL_REPEAT} × {c} per request", "noop", probe=f"{c}*{HOSTCALL_REPEAT}")
                 for c in calls]
        # The floor: the no-op filter making exactly the host calls of (c) / (f), with none of the logic.
        rows += [Row("h-seq_c", "(b) + exactly the host calls of (c), no logic", "noop", probe="seq_c*1"),
                 Row("h-seq_f", "(b) + exactly the host calls of (f), no logic", "noop", probe="seq_f*1")]
        if smoke:
            rows = [r for r in rows if r.id != "h-seq_c"]
    alts = alt_wasms or []
    for i, alt in enumerate(alts, 1):
        rows.insert(3 + i, Row(f"c-alt{i}", f"(c) with {alt.name} (BENCH_ALT_WASM)", f"rollout-alt{i}",
                               config="c-sticky.json", expect_split=True))
    # ...and (f) with each of them, after (f): old and new builds of the full product side by side.
    f_at = next(i for i, r in enumerate(rows) if r.id == "f")
    for i, alt in enumerate(alts, 1):
        rows.insert(f_at + i, Row(f"f-alt{i}", f"(f) with {alt.name} (BENCH_ALT_WASM)", f"rollout-alt{i}",
                                  config="f-full.json", expect_split=True))
    return rows


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], timeout: float, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def http_filters(row: Row, filter_config: dict | None, wasm_files: dict[str, Path]) -> list:
    router = {"name": "envoy.filters.http.router",
              "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
    if row.filter == "none":
        return [router]
    if row.filter == "lua":
        lua = {"name": "envoy.filters.http.lua",
               "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
                                "default_source_code": {"filename": str(BENCH / "lua" / row.script)}}}
        return [lua, router]
    name = "bench-noop" if row.filter == "noop" else "rollout-filter"
    wasm = {
        "name": name,
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": name,
                "root_id": name,
                # A VM that dies must show up as errors, not as a silently skipped filter.
                "failure_policy": "FAIL_CLOSED",
                "vm_config": {"vm_id": name, "runtime": RUNTIME,
                              "code": {"local": {"filename": str(wasm_files[row.filter])}}},
                "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                  "value": f"probe:{row.probe}" if row.probe else json.dumps(filter_config or {})},
            },
        },
    }
    return [wasm, router]


def render(row: Row, ports: list[int], filter_config: dict | None, wasm_files: dict[str, Path],
           pki: dict[str, Path]) -> str:
    tpl = (BENCH / "envoy.template.yaml").read_text()
    ts = "# plain TCP"
    if row.tls:
        ts = "transport_socket: " + json.dumps({
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                "require_client_certificate": True,
                "common_tls_context": {
                    "tls_certificates": [{"certificate_chain": {"filename": str(pki["server.pem"])},
                                          "private_key": {"filename": str(pki["server.key"])}}],
                    "validation_context": {"trusted_ca": {"filename": str(pki["ca.pem"])}},
                },
            },
        })
    subst = {
        "@FRONT_PORT@": str(ports[0]), "@STABLE_PORT@": str(ports[1]), "@CANARY_PORT@": str(ports[2]),
        "@HTTP_FILTERS@": json.dumps(http_filters(row, filter_config, wasm_files)),
        "@TRANSPORT_SOCKET@": ts,
    }
    for k, v in subst.items():
        tpl = tpl.replace(k, v)
    return tpl


class Envoy:
    def __init__(self, row: Row, yaml_text: str, front_port: int, work: Path = WORK):
        self.dir = work / row.id
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cfg = self.dir / "envoy.yaml"
        self.cfg.write_text(yaml_text)
        self.admin_file = self.dir / "admin.txt"
        self.log_file = self.dir / "envoy.log"
        self.front_port = front_port
        self.admin = ""
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 40, wrap: list[str] | None = None) -> str | None:
        """Starts Envoy (under `wrap`, e.g. valgrind, if given); None when ready, else why not."""
        for f in (self.admin_file, self.log_file):
            f.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [*(wrap if wrap is not None else [*NICE, *PIN_ENVOY]), ENVOY, "-c", str(self.cfg), "--concurrency", "1",
             "--use-dynamic-base-id", "-l", "warning", "--admin-address-path", str(self.admin_file), "--log-path", str(self.log_file)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return f"Envoy exited with {self.proc.returncode}"
            if not self.admin and self.admin_file.exists():
                self.admin = self.admin_file.read_text().strip()
            if self.admin:
                try:
                    if self.admin_get("/ready").strip() == "LIVE":
                        return None
                except OSError:
                    pass
            time.sleep(0.1)
        self.stop()
        return "Envoy not ready in time"

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def admin_get(self, path: str) -> str:
        with urllib.request.urlopen(f"http://{self.admin}{path}", timeout=5) as r:
            return r.read().decode()

    def stats(self) -> dict[str, int]:
        out = {}
        for line in self.admin_get("/stats").splitlines():
            k, _, v = line.rpartition(": ")
            if v.strip().isdigit():
                out[k] = int(v)
        return out

    def vm_memory(self) -> list[int]:
        """Linear memory of each wasm VM in this process, in bytes.

        Envoy 1.40 publishes no per-VM memory stat (only wasm.<runtime>.created/
        active). V8 reserves 8 GiB of address space per wasm32 memory and makes
        the first memory.size * 64 KiB of it read-write, leaving the rest as one
        PROT_NONE mapping; so each such mapping of >= 4 GiB gives a VM's current
        size as (reservation rounded to GiB) - (guard size)."""
        out: list[int] = []
        assert self.proc is not None
        if RUNTIME != "envoy.wasm.runtime.v8":
            return out  # the reading below knows V8's layout only
        with open(f"/proc/{self.proc.pid}/maps") as f:
            for line in f:
                parts = line.split()
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                if parts[1] == "---p" and len(parts) == 5 and hi - lo >= 4 * GIB:
                    guard = hi - lo
                    size = -(-guard // GIB) * GIB - guard
                    if size % 65536 == 0:
                        out.append(size)
        return out

    def cpu_ns(self) -> int:
        """CPU time used so far by all of Envoy's threads (schedstat: ns on CPU)."""
        assert self.proc is not None
        total = 0
        for stat in glob.glob(f"/proc/{self.proc.pid}/task/*/schedstat"):
            try:
                total += int(Path(stat).read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pass  # a thread that just ended
        return total

    def requests(self) -> int:
        return self.stats().get("http.front.downstream_rq_total", 0)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


# ---------------------------------------------------------------- probes


def request(row: Row, pki: dict[str, Path], path: str, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
    assert row.envoy is not None
    conn = http.client.HTTPConnection("127.0.0.1", row.envoy.front_port, timeout=5)
    if row.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(str(pki["ca.pem"]))
        ctx.load_cert_chain(str(pki["client.pem"]), str(pki["client.key"]))
        # HTTPConnection sends over a socket it is given: TLS to 127.0.0.1, verified as localhost.
        conn.sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", row.envoy.front_port), 5),
                                    server_hostname="localhost")
    try:
        conn.request("GET", path, headers=headers)
        r = conn.getresponse()
        r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}
    finally:
        conn.close()


TRACEPARENT = re.compile(r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")


def vector_keys(n: int) -> list[tuple[str, str]]:
    """(key, version under the 90/10 split) from the flagd vectors, printable ASCII keys only."""
    v = json.loads((ROOT / "tests" / "vectors" / "flagd.json").read_text())
    assert v["rolloutId"] == ROLLOUT_ID
    ok = [(c["key"], c["90-10"]) for c in v["cases"]
          if c["key"] and c["key"].isascii() and c["key"].isprintable() and c["key"] == c["key"].strip()]
    canary = [k for k in ok if k[1] == "canary"]
    stable = [k for k in ok if k[1] == "stable"]
    return canary[: n // 2] + stable[: n - min(len(canary), n // 2)]


def probe(row: Row, pki: dict[str, Path]) -> None:
    """What this Envoy really does, recorded in the row (failures and notes)."""
    def served_by(key: str) -> str | None:
        status, h = request(row, pki, "/", {"x-user-id": key})
        if status != 200:
            raise OSError(f"GET / (x-user-id: {key}) answered {status}")
        return h.get("x-served-by")

    if row.probe_cert:
        # carol is stable by the sticky hash: only the certificate's label can send her to canary.
        got = served_by("carol")
        if got == "canary":
            row.notes.append("certificate label decides (carol, sticky-stable, went canary)")
        elif got == "stable":
            row.missing = "certificate labels not in this build"
            row.notes.append("certificate labels NOT active in this build (the sticky hash decided): "
                             "this row is (c-mtls) plus whatever certificate config was accepted")
        else:
            row.failed = f"probe: carol served by {got!r}"
        return
    cases = vector_keys(40) if row.expect_split else [("alice", "stable"), ("carol", "stable")]
    if row.probe and row.probe.startswith("seq_"):
        cases = [("alice", "canary"), ("carol", "canary")]  # it sets the route header to canary
    wrong = [(k, want, got) for k, want in cases if (got := served_by(k)) != want]
    if wrong:
        row.failed = f"probe routing differs from the flagd vectors for {len(wrong)}/{len(cases)} keys, e.g. {wrong[0]}"
        return
    if row.filter.startswith("rollout") or row.id == "e-f":
        status, h = request(row, pki, "/__probe", {"x-user-id": "alice"})
        on = bool(TRACEPARENT.match(h.get("x-probe-traceparent", "")))
        bag = h.get("x-probe-baggage", "")
        if row.id in ("f", "e-f") or row.id.startswith("f-alt"):
            if on:
                row.notes.append("trace injected (a traceparent reached the upstream)")
            else:
                row.missing = "trace not yet integrated"
                row.notes.append("= metrics only; trace not yet integrated (no traceparent upstream)")
            if f"rollout.{ROLLOUT_ID}=canary" in bag:
                row.notes.append(f"baggage `{bag}` upstream")
            if h.get("x-probe-rollout-id") != ROLLOUT_ID:
                row.notes.append("no x-rollout-id upstream")
        elif on:
            row.notes.append("trace injection is ON in this row")


def start_row(row: Row, wasm_files: dict[str, Path], pki: dict[str, Path], work: Path = WORK,
              timeout: float = 40, wrap: list[str] | None = None) -> None:
    """Starts the row's Envoy in work/<row id>/ (row.envoy), or says why not (row.failed)."""
    cfg = json.loads((BENCH / "configs" / row.config).read_text()) if row.config else None
    for attempt in range(6):
        ports = free_ports(3)
        envoy = Envoy(row, render(row, ports, cfg, wasm_files, pki), ports[0], work)
        why = envoy.start(timeout, wrap)
        if why is None:
            row.envoy = envoy
            return
        text = envoy.log_text()
        envoy.stop()
        m = re.search(r"invalid configuration: (.*)", text)
        if m and cfg is not None:
            err = m.group(1).strip()
            u = re.match(r"^(\w+): unknown field `(\w+)`", err)
            if u and u.group(1) == u.group(2) and u.group(2) in cfg:
                key = u.group(2)
                del cfg[key]
                row.notes.append(f"config field `{key}` rejected by this build (dropped)")
                continue
            row.failed = f"filter rejected bench/configs/{row.config}: {err}"
            return
        if "ddress already in use" in text and attempt < 5:
            continue
        tail = "\n".join(text.strip().splitlines()[-5:])
        row.failed = f"{why}; log: {tail[:600]}"
        return


def lock() -> object:
    """One bench at a time on this machine: two would measure each other."""
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    f = open(LOCK, "a+")
    deadline = time.time() + LOCK_WAIT_S
    told = False
    while True:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return f
        except BlockingIOError:
            if time.time() > deadline:
                raise SystemExit(f"another bench run still holds {LOCK} after {LOCK_WAIT_S} s")
            if not told:
                log(f"waiting for another bench run to finish ({LOCK})")
                told = True
            time.sleep(1)
