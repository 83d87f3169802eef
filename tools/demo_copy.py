"""Copies of a shipped Envoy config and the file it watches under target/, for the hot-reload
demos (ecds_update.py, rds_update.py): they rewrite the copy, never a tracked file.
Standard library only."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def init(config: Path, watched: Path, demo: Path) -> Path:
    """Copy `config` and `watched` (both relative to the repository root) into `demo`, the
    config's path and watched_directory pointed at the copy; return the copied config."""
    copy = demo / watched.parent.name / watched.name
    text = (ROOT / config).read_text()
    for old, new in (
        (f"path: {watched}", f"path: {copy}"),
        (f"watched_directory: {{ path: {watched.parent} }}", f"watched_directory: {{ path: {copy.parent} }}"),
    ):
        if text.count(old) != 1:
            raise SystemExit(f"{config}: expected `{old}` once")
        text = text.replace(old, new)
    (ROOT / copy.parent).mkdir(parents=True, exist_ok=True)
    (ROOT / demo / config.name).write_text(text)
    (ROOT / copy).write_text((ROOT / watched).read_text())
    print(f"wrote {demo / config.name} and {copy}; from the repository root:")
    print(f"  .venv/bin/envoy -c {demo / config.name} --concurrency 1 --use-dynamic-base-id")
    return demo / config.name


def refuse_tracked(path: Path, init_hint: str) -> None:
    """Files of the repository are never rewritten, except under target/."""
    full = path.resolve()
    if full.is_relative_to(ROOT) and not full.is_relative_to(ROOT / "target"):
        raise SystemExit(f"{path}: a file of the repository; {init_hint}")
    if not path.exists():
        raise SystemExit(f"{path}: no such file ({init_hint})")
