#!/usr/bin/env python3
"""Change the rollout filter's config in a running Envoy that reads it by file-based ECDS.

    ecds_update.py --init                       copy the Istio-shaped config to target/ecds-demo/
    ecds_update.py --weights stable=0,canary=100 [--file target/ecds-demo/ecds/rollout-filter.yaml]
    ecds_update.py --config new-config.json     [--file ...]

--init writes target/ecds-demo/istio-ecds.yaml (envoy-config/istio-ecds.yaml watching
target/ecds-demo/ecds/) and a copy of envoy-config/ecds/rollout-filter.yaml there, so a hot reload
never edits a tracked file; the tool refuses a --file in the repository outside target/.

Rewrites the pluginConfig JSON (the StringValue `value:` line) and bumps version_info, then replaces
the file atomically: the new content goes to a temporary file in the same directory, which is then
renamed over the old one. Envoy watches the directory for moves, so it never reads a half-written
file. Envoy applies the update to new requests without a restart; requests in flight finish on the
config they started with. A config the filter rejects is refused by Envoy (stat
extension_config_discovery.http_filter.<name>.update_rejected, the filter's message in the log) and
the previous config keeps serving. With --check BIN the filter's parser (rollout-check-config) vets
the config before the file is touched. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from demo_copy import init, refuse_tracked

DEMO = Path("target/ecds-demo")
SHIPPED = Path("envoy-config/istio-ecds.yaml")
SHIPPED_ECDS = Path("envoy-config/ecds/rollout-filter.yaml")
INIT_HINT = f"`python3 tools/ecds_update.py --init` writes {DEMO}/ecds/rollout-filter.yaml"

VALUE_LINE = re.compile(r"(?m)^(?P<indent>\s*)value: '(?P<json>.*)'\s*$")
VERSION_LINE = re.compile(r'(?m)^version_info: "(?P<v>[^"]*)"\s*$')


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--file", type=Path, default=DEMO / "ecds/rollout-filter.yaml")
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--init", action="store_true", help="copy the config and its ECDS file to target/ecds-demo/")
    group.add_argument("--weights", help="name=weight,... for versions already in the config")
    group.add_argument("--config", type=Path, help="a whole new filter config (JSON)")
    ap.add_argument("--check", metavar="BIN", help="run the config through rollout-check-config first")
    args = ap.parse_args()
    if args.init:
        init(SHIPPED, SHIPPED_ECDS, DEMO)
        return 0
    refuse_tracked(args.file, INIT_HINT)

    text = args.file.read_text()
    values = list(VALUE_LINE.finditer(text))
    if len(values) != 1:
        raise SystemExit(f"{args.file}: expected one `value: '<json>'` line, found {len(values)}")
    current = json.loads(values[0]["json"])

    if args.config:
        new = json.loads(args.config.read_text())
    else:
        new = current
        weights = dict(kv.split("=", 1) for kv in args.weights.split(","))
        names = [v["name"] for v in new["versions"]]
        unknown = set(weights) - set(names)
        if unknown:
            raise SystemExit(f"no version(s) {sorted(unknown)} in the config (have {names})")
        for v in new["versions"]:
            if v["name"] in weights:
                v["weight"] = int(weights[v["name"]])

    compact = json.dumps(new, separators=(",", ":"))
    if "'" in compact:
        raise SystemExit("the config contains a single quote; it cannot go in a single-quoted YAML scalar")
    if args.check:
        out = subprocess.run([args.check], input=compact.encode(), capture_output=True, check=False)
        if out.returncode != 0:
            print(out.stdout.decode().strip() or out.stderr.decode().strip(), file=sys.stderr)
            return 1

    m = values[0]
    text = text[: m.start()] + f"{m['indent']}value: '{compact}'" + text[m.end() :]
    ver = VERSION_LINE.search(text)
    if ver:
        bumped = str(int(ver["v"]) + 1) if ver["v"].isdigit() else ver["v"] + "+1"
        text = text[: ver.start()] + f'version_info: "{bumped}"' + text[ver.end() :]

    fd, tmp = tempfile.mkstemp(prefix=f".{args.file.name}.", suffix=".tmp", dir=args.file.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, args.file)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    print(f"{args.file}: {compact}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
