#!/usr/bin/env python3
"""Package the filter as an OCI image that Istio's Wasm image fetcher accepts, without docker.

    oci_image.py [--wasm FILE] [--out DIR] [--tar FILE] [--tag TAG] [--render DIR]

Writes the "compat" variant (istio pkg/wasm/imagefetcher.go, extractOCIStandardImage): an OCI image
whose single layer (application/vnd.oci.image.layer.v1.tar+gzip) is a tar holding `plugin.wasm`.
- DIR (target/oci): an OCI image layout (oci-layout, index.json, blobs/sha256/...), tagged TAG;
- FILE (target/rollout-filter-oci.tar): the same layout as one tar ("oci-archive" to skopeo).
Everything is deterministic (no timestamps, fixed owners and modes): the same .wasm always gives the
same manifest digest, so the digest can be pinned in the WasmPlugin.

Prints the manifest digest (WasmPlugin `sha256` for oci:// URLs: Istio checks it against the image
manifest digest) and the .wasm's own sha256 (the `sha256` for http(s):// URLs, a record for file://),
and with --render writes the WasmPlugins in WASMPLUGINS (istio/wasmplugin.yaml, istio/file/, istio/route-weights/,
istio/flagger/, istio/gateway-multi/) with them filled in, and with --url the image url in place of
the shipped oci:// one (an Envoy Gateway Image takes it without the scheme). Only --out, --tar
and --render are written: never a tracked file.
Standard library only.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import re
import shutil
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The WasmPlugins and Envoy Gateway EnvoyExtensionPolicies `--render` fills in. Each pins what its
# url needs: the image manifest digest for oci:// and for an Envoy Gateway `Image` (its fetcher is
# Istio's), the .wasm's own sha256 otherwise.
WASMPLUGINS = (
    "istio/wasmplugin.yaml",
    "istio/file/wasmplugin.yaml",
    "istio/route-weights/wasmplugin.yaml",
    "istio/flagger/wasmplugin.yaml",
    "istio/gateway-multi/wasmplugin.yaml",
    "istio/gateway-api/argo/wasmplugin.yaml",
    "istio/gateway-api/flagger/wasmplugin.yaml",
    "envoy-gateway/argo/extension.yaml",
    "envoy-gateway/flagger/extension.yaml",
)
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
PLACEHOLDER_SHA = "0" * 64


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def tar_bytes(files: list[tuple[str, bytes]]) -> bytes:
    """A deterministic tar of (name, bytes): fixed mtime, owner and mode."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def build(wasm: bytes, tag: str) -> tuple[dict[str, bytes], str, bytes]:
    """Blobs by digest, the manifest digest, and index.json."""
    if wasm[:4] != b"\0asm":
        raise SystemExit("not a wasm module (no \\0asm magic)")
    layer_tar = tar_bytes([("plugin.wasm", wasm)])
    layer = gzip.compress(layer_tar, compresslevel=9, mtime=0)
    config = canonical_json(
        {
            "architecture": "wasm",
            "os": "wasip1",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + sha256(layer_tar)]},
            "history": [{"created_by": "tools/oci_image.py", "comment": "plugin.wasm: the rollout filter"}],
        }
    )
    manifest = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": "sha256:" + sha256(config), "size": len(config)},
            "layers": [{"mediaType": LAYER_MEDIA_TYPE, "digest": "sha256:" + sha256(layer), "size": len(layer)}],
            "annotations": {
                "org.opencontainers.image.title": "rollout-filter",
                "org.opencontainers.image.description": "rollout-filter proxy-wasm module (Istio compat image)",
            },
        }
    )
    manifest_digest = "sha256:" + sha256(manifest)
    index = canonical_json(
        {
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": [
                {
                    "mediaType": MANIFEST_MEDIA_TYPE,
                    "digest": manifest_digest,
                    "size": len(manifest),
                    "annotations": {"org.opencontainers.image.ref.name": tag},
                }
            ],
        }
    )
    blobs = {"sha256:" + sha256(b): b for b in (layer, config, manifest)}
    return blobs, manifest_digest, index


def layout_files(blobs: dict[str, bytes], index: bytes) -> list[tuple[str, bytes]]:
    files = [("oci-layout", canonical_json({"imageLayoutVersion": "1.0.0"})), ("index.json", index)]
    for digest in sorted(blobs):
        algo, hexd = digest.split(":", 1)
        files.append((f"blobs/{algo}/{hexd}", blobs[digest]))
    return files


def write_layout(out: Path, files: list[tuple[str, bytes]]) -> None:
    if out.exists():
        shutil.rmtree(out)
    for name, data in files:
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def render(src: Path, dst: Path, sha: str, what: str, url: str | None) -> None:
    """src with its sha256 (and, given, its url) filled in; the comment above the sha256 line,
    which explains the placeholder, becomes one line saying what the digest is."""
    lines = src.read_text().splitlines(keepends=True)
    at = [i for i, l in enumerate(lines) if re.match(r'^\s*sha256:\s*"?[0-9a-f]{64}"?\s*$', l)]
    if len(at) != 1:
        raise SystemExit(f"{src}: expected exactly one sha256 line, found {len(at)}")
    i = at[0]
    indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
    start = i
    while start > 0 and lines[start - 1].lstrip().startswith("#"):
        start -= 1
    lines[start : i + 1] = [f"{indent}# {what}, written by `make oci`\n", f'{indent}sha256: "{sha}"\n']
    text = "".join(lines)
    if url:
        text = re.sub(r"(?m)^(\s*url:\s*)\S+\s*$", lambda m: m[1] + url, text, count=1)
    dst.parent.mkdir(parents=True, exist_ok=True)
    header = f"# GENERATED by tools/oci_image.py from {src.relative_to(ROOT)}: do not edit.\n"
    dst.write_text(header + text)


def pin(src: Path, override: str | None) -> tuple[str | None, bool, str]:
    """The url to write (None: keep the file's), whether the manifest digest is pinned, and what
    the sha256 is, for the comment."""
    text = src.read_text()
    shipped = re.search(r"(?m)^\s*url:\s*(\S+)", text)
    current = shipped[1] if shipped else ""
    # An Envoy Gateway `Image` names the registry reference without a scheme.
    image = re.search(r"(?m)^\s*type:\s*Image\s*$", text) is not None
    new = None
    # OCI_URL names the image: it replaces oci:// urls and images (file:// stays a mounted file).
    if override and current.startswith("oci://"):
        new = override
    elif override and image and override.startswith("oci://"):
        new = override[len("oci://") :]
    url = new or current
    if image or url.startswith("oci://"):
        return new, True, "the image manifest digest (compared with the image's manifest)"
    if url.startswith("file://"):
        return new, False, "the .wasm's own sha256: a record, istiod does not check it for file://"
    return new, False, "the .wasm's own sha256 (compared with the download)"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wasm", type=Path, default=ROOT / "target/rollout-filter.wasm")
    ap.add_argument("--out", type=Path, default=ROOT / "target/oci")
    ap.add_argument("--tar", type=Path, default=ROOT / "target/rollout-filter-oci.tar")
    ap.add_argument("--tag", default="0.1.0")
    ap.add_argument("--render", type=Path, help="write WasmPlugins with sha256 filled in under this directory")
    ap.add_argument("--url", help="with --render: the image url (oci://REGISTRY/REPO:TAG) for the oci:// WasmPlugins")
    args = ap.parse_args()
    if args.url and not re.match(r"^(oci|https?)://\S+$", args.url):
        raise SystemExit(f"--url {args.url}: give oci://REGISTRY/REPO:TAG (or an https:// url)")

    wasm = args.wasm.read_bytes()
    blobs, manifest_digest, index = build(wasm, args.tag)
    files = layout_files(blobs, index)
    write_layout(args.out, files)
    args.tar.parent.mkdir(parents=True, exist_ok=True)
    args.tar.write_bytes(tar_bytes(files))
    wasm_sha = sha256(wasm)

    print(f"OCI image layout   {rel(args.out)} (tag {args.tag})")
    print(f"OCI archive        {rel(args.tar)}")
    print(f"manifest digest    {manifest_digest}")
    print(f"wasm sha256        {wasm_sha}  ({len(wasm)} bytes)")
    print(f"WasmPlugin sha256  {manifest_digest.split(':', 1)[1]}   (oci:// url: the manifest digest)")
    print(f"WasmPlugin sha256  {wasm_sha}   (https:// url; file:// record)")
    if args.render:
        manifest_sha = manifest_digest.split(":", 1)[1]
        for path in WASMPLUGINS:
            dst = args.render / path
            new_url, manifest, what = pin(ROOT / path, args.url)
            render(ROOT / path, dst, manifest_sha if manifest else wasm_sha, what, new_url)
            print(f"rendered           {rel(dst)}")
    dest = args.url[len("oci://") :] if (args.url or "").startswith("oci://") else f"REGISTRY/rollout-filter:{args.tag}"
    print(f"push (keeps the digest): oras cp --from-oci-layout {rel(args.out)}:{args.tag} {dest}")
    print(
        "                     or: skopeo copy --preserve-digests "
        f"oci-archive:{rel(args.tar)}:{args.tag} docker://{dest}"
    )
    print(f"                     or: crane push {rel(args.out)} {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
