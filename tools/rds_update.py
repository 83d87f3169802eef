#!/usr/bin/env python3
"""Set the managed route's weights in a route table Envoy reads by file-based RDS.

    rds_update.py --init               copy the route-weights config to target/rds-demo/
    rds_update.py 75 25 [--file target/rds-demo/rds/checkout.yaml]

Rewrites the `weight:` of the two `weighted_clusters` entries (stable first, then canary, the order
of the flagd flag's variants), bumps version_info and replaces the file atomically (temporary file
in the same directory, then rename), so Envoy never reads a half-written file. New requests follow
the new weights; with the filter in route-weights mode every user keeps their flagd bucket, so a
rising canary weight only moves users from stable to canary. --init writes
target/rds-demo/route-weights.yaml watching a copy of envoy-config/rds/checkout.yaml there; a file
of the repository outside target/ is refused. Standard library only.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from pathlib import Path

from demo_copy import init, refuse_tracked

DEMO = Path("target/rds-demo")
INIT_HINT = f"`python3 tools/rds_update.py --init` writes {DEMO}/rds/checkout.yaml"

WEIGHT = re.compile(r"(?m)^(?P<head>\s*- \{ name: \"[^\"]+\", weight: )(?P<w>\d+)(?P<tail> \}\s*)$")
VERSION = re.compile(r'(?m)^version_info: "(?P<v>\d+)"\s*$')


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", type=int, nargs="*", metavar="W", help="stable and canary weight")
    ap.add_argument("--file", type=Path, default=DEMO / "rds/checkout.yaml")
    ap.add_argument("--init", action="store_true", help="copy the config and its route file to target/rds-demo/")
    args = ap.parse_args()
    if args.init:
        init(Path("envoy-config/route-weights.yaml"), Path("envoy-config/rds/checkout.yaml"), DEMO)
        return 0
    if len(args.weights) != 2:
        ap.error("give two weights: stable and canary")
    refuse_tracked(args.file, INIT_HINT)
    if any(w < 0 for w in args.weights) or sum(args.weights) == 0:
        raise SystemExit("weights must be >= 0 and not both 0")

    text = args.file.read_text()
    found = list(WEIGHT.finditer(text))
    if len(found) != 2:
        raise SystemExit(f"{args.file}: expected two weighted cluster lines, found {len(found)}")
    version = VERSION.search(text)
    if not version:
        raise SystemExit(f'{args.file}: no version_info: "N" line')
    weights = iter(args.weights)
    text = WEIGHT.sub(lambda m: f"{m['head']}{next(weights)}{m['tail']}", text)
    text = VERSION.sub(f'version_info: "{int(version["v"]) + 1}"', text, count=1)

    fd, tmp = tempfile.mkstemp(dir=args.file.parent, prefix=".", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, args.file)
    print(f"{args.file}: stable {args.weights[0]} / canary {args.weights[1]}, version_info {int(version['v']) + 1}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
