"""Envoy Gateway's EnvoyPatchPolicy JSON patches, for the subset of JSONPath the manifests here use.

Envoy Gateway (envoyproxy/gateway d32f2829) marshals the resource to JSON with proto field names
(internal/xds/translator/jsonpatch.go:129, jsonMarshalOpts UseProtoNames), expands `jsonPath` to
JSON pointers and appends `path` to each (internal/utils/jsonpatch/jsonpathtopointer.go:17-58), skips
the patch when the jsonPath selects nothing (internal/utils/jsonpatch/patch.go:48-54), and applies
RFC 6902 with EnsurePathExistsOnAdd (patch.go:25-26). Envoy Gateway's JSONPath is ohler55/ojg; only
this subset is evaluated here, anything else is refused (so no shipped patch goes unevaluated):

    $  .name  [N]  [*]  [?(@.name=='literal')]

Standard library only.
"""

from __future__ import annotations

import copy
import re
from typing import Any

STEP = re.compile(
    r"""\.(?P<key>[A-Za-z_][A-Za-z0-9_]*)"""
    r"""|\[(?P<index>\d+)\]"""
    r"""|\[(?P<all>\*)\]"""
    r"""|\[\?\(@\.(?P<fkey>[A-Za-z_][A-Za-z0-9_]*)\s*==\s*(?P<q>['"])(?P<lit>[^'"]*)(?P=q)\)\]"""
)


class Unsupported(ValueError):
    pass


def parse(json_path: str) -> list[tuple]:
    """The steps of `json_path`, or Unsupported when it is outside the subset."""
    if not json_path.startswith("$"):
        raise Unsupported(f"jsonPath {json_path!r} must start with $")
    steps, pos = [], 1
    while pos < len(json_path):
        m = STEP.match(json_path, pos)
        if not m:
            raise Unsupported(f"{json_path[pos:][:24]!r}... is outside the subset this tool evaluates")
        if m["key"]:
            steps.append(("key", m["key"]))
        elif m["index"]:
            steps.append(("index", int(m["index"])))
        elif m["all"]:
            steps.append(("all",))
        else:
            steps.append(("filter", m["fkey"], m["lit"]))
        pos = m.end()
    if not steps:
        raise Unsupported("jsonPath '$' alone is refused by Envoy Gateway (jsonpathtopointer.go:30-35)")
    return steps


def escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def locate(doc: Any, steps: list[tuple]) -> list[str]:
    """JSON pointers of everything `steps` selects in `doc`."""
    found = [("", doc)]
    for step in steps:
        nxt = []
        for ptr, node in found:
            if step[0] == "key" and isinstance(node, dict) and step[1] in node:
                nxt.append((f"{ptr}/{escape(step[1])}", node[step[1]]))
            elif step[0] == "index" and isinstance(node, list) and step[1] < len(node):
                nxt.append((f"{ptr}/{step[1]}", node[step[1]]))
            elif step[0] in ("all", "filter") and isinstance(node, (list, dict)):
                items = enumerate(node) if isinstance(node, list) else node.items()
                for k, v in items:
                    if step[0] == "all" or (isinstance(v, dict) and v.get(step[1]) == step[2]):
                        nxt.append((f"{ptr}/{escape(str(k))}", v))
        found = nxt
    return [p for p, _ in found]


def tokens(pointer: str) -> list[str]:
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]]


def apply(doc: Any, pointer: str, op: str, value: Any = None) -> Any:
    """RFC 6902 add / replace / remove at `pointer`, missing objects created on add; a new document."""
    doc = copy.deepcopy(doc)
    toks = tokens(pointer)
    if not toks:
        raise ValueError("the whole document cannot be patched here")
    node = doc
    for t in toks[:-1]:
        if isinstance(node, list):
            node = node[int(t)]
        else:
            if t not in node and op == "add":
                node[t] = {}
            node = node[t]
    last = toks[-1]
    if isinstance(node, list):
        i = len(node) if last == "-" else int(last)
        if op == "add":
            node.insert(i, value)
        elif op == "replace":
            node[i] = value
        else:
            del node[i]
    elif op in ("add", "replace"):
        if op == "replace" and last not in node:
            raise ValueError(f"replace: {pointer} does not exist")
        node[last] = value
    else:
        del node[last]
    return doc


def patch(doc: Any, operation: dict) -> tuple[Any, int]:
    """One EnvoyPatchPolicy operation applied to `doc`: (new document, number of places patched)."""
    op = operation["op"]
    if op not in ("add", "replace", "remove"):
        raise Unsupported(f"op {op} is not evaluated here")
    if operation.get("jsonPath"):
        pointers = locate(doc, parse(operation["jsonPath"]))
        suffix = operation.get("path") or ""
        pointers = [p.rstrip("/") + "/" + suffix.lstrip("/") if suffix else p for p in pointers]
    else:
        pointers = [operation["path"]]
    for p in pointers:
        doc = apply(doc, p, op, operation.get("value"))
    return doc, len(pointers)
