#!/usr/bin/env python3
"""The server's modules in one direction: each top-level module of
server/src sits on a floor, and its code (tests aside) may name only
modules on its own floor or below, with no circle anywhere; client-cli's
modules make no circle. Run by `make test`; exits 1 naming each arrow that
runs up, each circle, and each module that has no floor yet.

usage: scripts/check-layers.py [CHECKOUT] | --self-test"""

import pathlib
import re
import sys

# Bottom to top: what every part agrees on, then what keeps state, then the
# runtime, then what callers reach. README.md's layout lists the same floors.
SERVER_FLOORS = [
    ["domain", "files"],
    ["store", "config", "pki"],
    ["audit", "metrics"],
    ["provision", "webhooks"],
    ["pool", "reaper"],
    ["sessions"],
    ["api"],
    ["web"],
    ["app"],
    ["main", "lib", "testkit"],
]

USE_GROUP = re.compile(r"\bcrate::\{")
PATH = re.compile(r"\bcrate::(\w+)")


def top_level_names(group: str) -> list[str]:
    """The first segment of each item of a `crate::{...}` group."""
    names, depth, item = [], 0, ""
    for ch in group:
        if ch == "{":
            depth += 1
        elif ch == "}":
            if depth == 0:
                break
            depth -= 1
        elif ch == "," and depth == 0:
            names.append(item)
            item = ""
            continue
        if depth == 0:
            item += ch
    names.append(item)
    return [m.group(1) for n in names if (m := re.match(r"\s*(\w+)", n))]


def arrows(src: pathlib.Path) -> dict[tuple[str, str], set[str]]:
    """(from, to) -> files, between top-level modules, outside test code."""
    found: dict[tuple[str, str], set[str]] = {}
    for path in sorted(src.rglob("*.rs")):
        parts = path.relative_to(src).parts
        module = parts[0].removesuffix(".rs")
        text = path.read_text(errors="replace").split("#[cfg(test)]")[0]
        text = re.sub(r"//.*", "", text)
        targets = set(PATH.findall(text))
        for start in USE_GROUP.finditer(text):
            targets.update(top_level_names(text[start.end():]))
        for target in targets - {module, "self"}:
            found.setdefault((module, target), set()).add(str(path.relative_to(src)))
    return found


def circles(edges) -> list[list[str]]:
    """Strongly connected components of more than one module."""
    nodes = sorted({n for edge in edges for n in edge})
    after = {n: sorted(b for a, b in edges if a == n) for n in nodes}
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in after[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for n in nodes:
        if n not in index:
            visit(n)
    return out


def check(root: pathlib.Path) -> list[str]:
    floor = {m: f for f, names in enumerate(SERVER_FLOORS) for m in names}
    problems = []
    server = root / "server/src"
    edges = arrows(server)
    modules = {p.name.removesuffix(".rs") for p in server.iterdir() if p.suffix == ".rs" or p.is_dir()}
    for module in sorted(modules - floor.keys()):
        problems.append(f"server: module `{module}` has no floor: add it to SERVER_FLOORS in {__file__}")
    for (a, b), files in sorted(edges.items()):
        if a in floor and b in floor and floor[b] > floor[a]:
            problems.append(
                f"server: `{a}` (floor {floor[a]}) names `{b}` (floor {floor[b]}), above it, in "
                + ", ".join(sorted(files))
            )
    for component in circles(edges):
        problems.append("server: circle " + " <-> ".join(component))
    for component in circles(arrows(root / "client-cli/src")):
        problems.append("client-cli: circle " + " <-> ".join(component))
    return problems


def self_test() -> int:
    """The check finds an arrow up, a circle and a module with no floor,
    and passes a tree with none (in a temporary checkout)."""
    import tempfile

    def tree(files: dict[str, str]) -> list[str]:
        with tempfile.TemporaryDirectory() as tmp:
            for name, text in files.items():
                path = pathlib.Path(tmp, name)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
            (pathlib.Path(tmp) / "client-cli/src").mkdir(parents=True, exist_ok=True)
            return check(pathlib.Path(tmp))

    good = {
        "server/src/domain/mod.rs": "pub mod error;",
        "server/src/store/mod.rs": "use crate::{domain::error::Error, store::x};",
        "server/src/api/mod.rs": "use crate::store::Store;\n#[cfg(test)]\nuse crate::web::X;",
    }
    assert tree(good) == [], tree(good)
    up = tree({**good, "server/src/store/sqlite.rs": "use crate::{\n    api::grpc::Caller,\n};"})
    assert any("`store` (floor 1) names `api` (floor 6)" in p for p in up), up
    assert any("circle api <-> store" in p for p in up), up
    assert tree({**good, "server/src/utils.rs": ""}) == [
        f"server: module `utils` has no floor: add it to SERVER_FLOORS in {__file__}"
    ]
    cli = tree({**good, "client-cli/src/a.rs": "use crate::b::X;", "client-cli/src/b/mod.rs": "crate::a::y();"})
    assert cli == ["client-cli: circle a <-> b"], cli
    print("layers self-test: ok")
    return 0


def main() -> int:
    if sys.argv[1:] == ["--self-test"]:
        return self_test()
    problems = check(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "."))
    for line in problems:
        print(line)
    print("layers:", "ok" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
