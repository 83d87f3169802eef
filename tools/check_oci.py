#!/usr/bin/env python3
"""Unpack the OCI archive from `make oci` the way Istio's image fetcher would and check it.

    check_oci.py --tar target/rollout-filter-oci.tar --dir target/oci --wasm FILE [--rendered DIR]

Checks, independently of tools/oci_image.py:
- the archive is an OCI image layout (oci-layout 1.0.0, index.json) identical to the directory;
- every blob's sha256 and size match the descriptors that name it;
- the manifest is an OCI image manifest whose LAST layer (the one Istio reads) has media type
  application/vnd.oci.image.layer.v1.tar+gzip and is a gzip'd tar holding plugin.wasm (Istio
  takes the first entry whose base name is plugin.wasm) with exactly the bytes of FILE, starting
  with the wasm magic; the config's diff_id is the sha256 of the uncompressed layer;
- with --rendered: every istio/**/wasmplugin.yaml and envoy-gateway/**/extension.yaml has a generated copy that pins the manifest
  digest (oci:// url) or the .wasm's sha256 (file://).
Prints `N passed, 0 failed` and exits 0, or names each failed check and exits 1.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import re
import sys
import tarfile
from pathlib import Path

OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"

passed = 0
failed: list[str] = []


def check(ok: bool, what: str) -> bool:
    global passed
    if ok:
        passed += 1
        print(f"ok    {what}")
    else:
        failed.append(what)
        print(f"FAIL  {what}")
    return ok


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_archive(path: Path) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    with tarfile.open(path) as tar:
        for m in tar.getmembers():
            if m.isfile():
                f = tar.extractfile(m)
                if f is not None:
                    files[m.name.lstrip("./")] = f.read()
    return files


def blob(files: dict[str, bytes], desc: dict) -> bytes | None:
    algo, hexd = desc["digest"].split(":", 1)
    data = files.get(f"blobs/{algo}/{hexd}")
    if data is None:
        check(False, f"blob {desc['digest']} present")
        return None
    check(algo == "sha256" and sha(data) == hexd, f"blob {desc['digest'][:19]}… content matches its digest")
    check(len(data) == desc["size"], f"blob {desc['digest'][:19]}… size {desc['size']}")
    return data


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tar", type=Path, required=True)
    ap.add_argument("--dir", type=Path, required=True)
    ap.add_argument("--wasm", type=Path, required=True)
    ap.add_argument("--rendered", type=Path)
    ap.add_argument("--url", help="the url --render was given (OCI_URL)")
    args = ap.parse_args()

    wasm = args.wasm.read_bytes()
    files = read_archive(args.tar)
    on_disk = {
        str(p.relative_to(args.dir)): p.read_bytes() for p in sorted(args.dir.rglob("*")) if p.is_file()
    }
    check(files == on_disk, f"{args.tar} holds exactly the layout in {args.dir}")
    check(json.loads(files.get("oci-layout", b"{}")).get("imageLayoutVersion") == "1.0.0", "oci-layout 1.0.0")

    index = json.loads(files["index.json"])
    manifests = index.get("manifests", [])
    check(len(manifests) == 1, "index.json lists one manifest")
    mdesc = manifests[0]
    check(mdesc.get("mediaType") == OCI_MANIFEST, "manifest media type is OCI image manifest v1")
    check(bool(mdesc.get("annotations", {}).get("org.opencontainers.image.ref.name")), "manifest is tagged")
    raw_manifest = blob(files, mdesc)
    if raw_manifest is None:
        return finish()
    manifest = json.loads(raw_manifest)
    digest = mdesc["digest"]
    check(manifest.get("schemaVersion") == 2, "manifest schemaVersion 2")

    layers = manifest.get("layers", [])
    check(len(layers) >= 1, "image has a layer")
    last = layers[-1]
    check(last.get("mediaType") == OCI_LAYER, f"last layer media type {OCI_LAYER} (Istio compat variant)")
    layer = blob(files, last)
    config = blob(files, manifest["config"])
    if layer is None or config is None:
        return finish()
    layer_tar = gzip.decompress(layer)
    found = None
    with tarfile.open(fileobj=io.BytesIO(layer_tar)) as tar:
        for m in tar.getmembers():
            if Path(m.name).name == "plugin.wasm":
                f = tar.extractfile(m)
                found = f.read() if f else None
                break
    check(found is not None, "layer holds plugin.wasm")
    check(found == wasm, f"plugin.wasm is byte-for-byte {args.wasm} ({len(wasm)} bytes, sha256 {sha(wasm)[:12]}…)")
    check(found is not None and found[:4] == b"\0asm", "plugin.wasm starts with the wasm magic")
    diff_ids = json.loads(config).get("rootfs", {}).get("diff_ids", [])
    check(diff_ids[-1:] == ["sha256:" + sha(layer_tar)], "config diff_id = sha256 of the uncompressed layer")

    if args.rendered:
        # Every WasmPlugin in istio/ and EnvoyExtensionPolicy in envoy-gateway/ has a rendered copy
        # pinning what its url scheme needs (an Envoy Gateway `Image` is an OCI image too).
        root = Path(__file__).resolve().parent.parent
        sources = sorted((root / "istio").rglob("wasmplugin.yaml")) + sorted((root / "envoy-gateway").rglob("extension.yaml"))
        for src in sources:
            rel = src.relative_to(root)
            dst = args.rendered / rel
            text = dst.read_text() if dst.exists() else ""
            # The rendered url decides (OCI_URL may have replaced the shipped one).
            url = re.search(r"(?m)^\s*url:\s*(\S+)", text)
            image = re.search(r"(?m)^\s*type:\s*Image\s*$", text) is not None
            oci = image or (url is not None and url[1].startswith("oci://"))
            want = digest.split(":", 1)[1] if oci else sha(wasm)
            got = re.findall(r'(?m)^\s*sha256:\s*"?([0-9a-f]{64})"?\s*$', text)
            check(got == [want], f"{args.rendered / rel} pins sha256 {want[:12]}…")
            check("PLACEHOLDER" not in text, f"{args.rendered / rel} has no placeholder comment")
            if args.url and (image or "url: oci://" in src.read_text()):
                expect = args.url[len("oci://") :] if image else args.url
                check(url is not None and url[1] == expect, f"{args.rendered / rel} has url {expect}")

    print(f"manifest digest {digest}")
    return finish()


def finish() -> int:
    print(f"{passed} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
