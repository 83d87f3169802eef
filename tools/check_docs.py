#!/usr/bin/env python3
"""Every relative link, #anchor and repository path the committed Markdown names exists.

Checks, in each *.md git tracks or would track (git ls-files; a walk of the tree without git):
- each relative link `[text](path#anchor)` resolves to a file or directory, and its anchor to a
  heading of the target (GitHub's slugs: lowercase, punctuation but `-` and `_` dropped, spaces
  to `-`, a repeated heading suffixed -1, -2, ...);
- each word of an inline code span or a fenced code block that starts with a top-level directory
  of the repository (`filter/`, `istio/`, ...) is a file or directory that exists. Globs (`*`,
  `{`), placeholders (`<`, `…`, `...`) and generated `target/` paths are not checked.

Usage: tools/check_docs.py [FILE.md ...]   (exit 1 on any broken link or path)
"""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Paths of other repositories that the docs cite and that happen to start like one of ours:
# (the path, the repository it is in). Each must still be cited, so a stale entry fails too.
FOREIGN = {
    "docs/architecture-decisions/fractional-non-string-rand-units.md": "open-feature/flagd",
    "docs/rpc/grpc.md": "open-telemetry/semantic-conventions",
    "tools/packaging/common/envoy_bootstrap.json": "istio/istio",
}

SKIP_DIRS = {".git", "target", "node_modules", ".venv"}
FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REF_DEF = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")


def markdown_files():
    try:
        out = subprocess.run(
            # new pages count before they are added; ignored files (node_modules, ...) do not
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "*.md"],
            cwd=ROOT, capture_output=True, check=True,
        ).stdout.decode()
        files = [f for f in out.split("\0") if f]
    except (OSError, subprocess.CalledProcessError):
        files = []
        for d, dirs, names in os.walk(ROOT):
            dirs[:] = [x for x in dirs if x not in SKIP_DIRS]
            files += [os.path.relpath(os.path.join(d, n), ROOT) for n in names if n.endswith(".md")]
    return sorted(f for f in files if not set(f.split("/")) & SKIP_DIRS)


def top_dirs():
    return sorted(
        n for n in os.listdir(ROOT)
        if os.path.isdir(os.path.join(ROOT, n)) and n not in SKIP_DIRS and n != ".git"
    )


def prose_lines(text):
    """(line number, line) outside fenced code blocks."""
    fenced = False
    for n, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield n, line


def slug(heading):
    """GitHub's anchor for a heading's text."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path, cache={}):
    if path not in cache:
        seen, out = {}, set()
        with open(path, encoding="utf-8") as f:
            for _, line in prose_lines(f.read()):
                m = HEADING.match(line)
                if not m:
                    continue
                s = slug(m.group(2))
                n = seen.get(s, 0)
                seen[s] = n + 1
                out.add(s if n == 0 else f"{s}-{n}")
        cache[path] = out
    return cache[path]


def check_link(doc, target):
    """An error message, or None."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("//"):
        return None  # https:, mailto:, ...: not checked here
    path, _, anchor = target.partition("#")
    if path:
        dest = os.path.normpath(os.path.join(os.path.dirname(os.path.join(ROOT, doc)), path))
        if not os.path.exists(dest):
            return f"link to {target}: no such file"
    else:
        dest = os.path.join(ROOT, doc)
    if anchor:
        if not dest.endswith(".md") or os.path.isdir(dest):
            return None  # an anchor into a non-Markdown file (a line, say): not a heading
        if anchor not in anchors(dest):
            return f"link to {target}: no heading #{anchor} in {os.path.relpath(dest, ROOT)}"
    return None


def path_words(span, tops):
    for word in span.split():
        word = word.strip("\"'(),;:.")
        word = re.split(r"[#:]", word, maxsplit=1)[0]  # file#1, file:12-34
        if "/" not in word or word.split("/")[0] not in tops:
            continue
        if any(c in word for c in "*{<>$…") or "..." in word:
            continue
        yield word


def code_lines(text):
    """(line number, line) inside fenced code blocks: commands and listings name paths too."""
    prose = {n for n, _ in prose_lines(text)}
    for n, line in enumerate(text.splitlines(), 1):
        if n not in prose and not FENCE.match(line):
            yield n, line


def check_path(doc, n, word, cited):
    if word in FOREIGN:
        cited.add(word)
        return None
    if not os.path.exists(os.path.join(ROOT, word)):
        return f"{doc}:{n}: `{word}`: no such file in the repository"
    return None


def check(doc, tops, cited):
    errors = []
    with open(os.path.join(ROOT, doc), encoding="utf-8") as f:
        text = f.read()
    for n, line in code_lines(text):
        errors += filter(None, (check_path(doc, n, w, cited) for w in path_words(line, tops)))
    for n, line in prose_lines(text):
        spans = [m.group(2) for m in CODE_SPAN.finditer(line)]
        bare = CODE_SPAN.sub("", line)
        targets = [m.group(1) for m in LINK.finditer(bare)]
        m = REF_DEF.match(bare)
        if m:
            targets.append(m.group(1))
        for target in targets:
            err = check_link(doc, target)
            if err:
                errors.append(f"{doc}:{n}: {err}")
        for span in spans:
            errors += filter(None, (check_path(doc, n, w, cited) for w in path_words(span, tops)))
    return errors


def main(argv):
    docs = argv or markdown_files()
    tops = set(top_dirs()) - {"target"}
    errors, cited = [], set()
    for doc in docs:
        errors += check(doc, tops, cited)
    if not argv:
        for path in sorted(set(FOREIGN) - cited):
            errors.append(f"tools/check_docs.py: FOREIGN {path} ({FOREIGN[path]}) is cited nowhere")
    for e in errors:
        print(e)
    if errors:
        print(f"docs-check: {len(errors)} broken link(s) or path(s)")
        return 1
    print(f"docs-check: {len(docs)} Markdown files, every link, anchor and repository path exists")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
