"""Render istio/flagd/wasmplugin.yaml from the FeatureFlag the services' flagd reads.

The flag lives once, in istio/flagd/featureflag.yaml (core.openfeature.dev/v1beta1); its
spec.flagSpec becomes the WasmPlugin's pluginConfig.flagd.flagSet, written as JSON (which is
YAML) so nothing about it changes on the way. --check fails when the committed file is stale.

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


def render() -> str:
    flag = yaml.safe_load((DIR / "featureflag.yaml").read_text())
    if (flag.get("apiVersion"), flag.get("kind")) != ("core.openfeature.dev/v1beta1", "FeatureFlag"):
        raise SystemExit("featureflag.yaml: not a core.openfeature.dev/v1beta1 FeatureFlag")
    spec = flag["spec"]["flagSpec"]
    out = []
    for line in (DIR / "wasmplugin.yaml.tmpl").read_text().splitlines():
        if MARK in line:
            indent = " " * (len(line) - len(line.lstrip()) + 2)
            text = json.dumps(spec, indent=2, ensure_ascii=False).replace("\n", "\n" + indent)
            line = line.replace(MARK, text)
        out.append(line)
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="fail if istio/flagd/wasmplugin.yaml is stale")
    args = ap.parse_args()
    text = render()
    target = DIR / "wasmplugin.yaml"
    if args.check:
        if not target.exists() or target.read_text() != text:
            print(f"{target.relative_to(ROOT)} is stale: run `make istio-flagd`", file=sys.stderr)
            return 1
        print(f"up to date: {target.relative_to(ROOT)} (flagSet = featureflag.yaml spec.flagSpec)")
        return 0
    target.write_text(text)
    print(f"wrote {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
