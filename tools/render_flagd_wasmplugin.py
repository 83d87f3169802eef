"""Render istio/flagd/wasmplugin.yaml and sync.yaml from the FeatureFlag the services' flagd reads.

The flag lives once, in istio/flagd/featureflag.yaml (core.openfeature.dev/v1beta1); its
spec.flagSpec becomes each WasmPlugin's pluginConfig.flagd.flagSet (in sync.yaml, the start-up
value until flagd's first snapshot), written as JSON (which is YAML) so nothing about it changes
on the way. --check fails when a committed file is stale.

  python tools/render_flagd_wasmplugin.py [--check]
"""
import argparse
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DIR = ROOT / "istio" / "flagd"
MARK = "{{flagSpec}}"
# Each rendered file, from its NAME.tmpl.
TARGETS = ("wasmplugin.yaml", "sync.yaml")


def render(target: str) -> str:
    flag = yaml.safe_load((DIR / "featureflag.yaml").read_text())
    if (flag.get("apiVersion"), flag.get("kind")) != ("core.openfeature.dev/v1beta1", "FeatureFlag"):
        raise SystemExit("featureflag.yaml: not a core.openfeature.dev/v1beta1 FeatureFlag")
    spec = flag["spec"]["flagSpec"]
    out = []
    for line in (DIR / f"{target}.tmpl").read_text().splitlines():
        if MARK in line:
            indent = " " * (len(line) - len(line.lstrip()) + 2)
            text = json.dumps(spec, indent=2, ensure_ascii=False).replace("\n", "\n" + indent)
            line = line.replace(MARK, text)
        out.append(line)
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="fail if a rendered file is stale")
    args = ap.parse_args()
    stale = 0
    for name in TARGETS:
        text = render(name)
        target = DIR / name
        if not args.check:
            target.write_text(text)
            print(f"wrote {target.relative_to(ROOT)}")
        elif not target.exists() or target.read_text() != text:
            print(f"{target.relative_to(ROOT)} is stale: run `make istio-flagd`", file=sys.stderr)
            stale += 1
        else:
            print(f"up to date: {target.relative_to(ROOT)} (flagSet = featureflag.yaml spec.flagSpec)")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
