"""The source layout's promises (README "Where things are"): each dependency stays in its folder,
requests flow one way (doors -> app -> domain, app -> store), and no file imports one that imports
it back, directly or around a circle."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers import ROOT

SRC = ROOT / "src"


def rust_files(below: Path = SRC) -> list[Path]:
    return sorted(below.rglob("*.rs"))


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def without_tests(text: str) -> str:
    """The text before a file's `#[cfg(test)]` module: tests may reach anywhere."""
    cut = text.find("#[cfg(test)]")
    return text if cut < 0 else text[:cut]


def mentions(word: str, allowed: tuple[str, ...]) -> list[str]:
    pattern = re.compile(rf"\b{word}\b")
    return [
        f"{rel(p)}:{n}"
        for p in rust_files()
        if not rel(p).startswith(allowed)
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]


def test_tonic_stays_in_the_grpc_door():
    assert mentions("tonic", ("src/grpc/",)) == []


@pytest.mark.parametrize("word", ["sea_orm", "sqlx", "sea_query"])
def test_the_database_layer_stays_in_store(word):
    assert mentions(word, ("src/store/",)) == []


SQL = re.compile(
    r'"[^"\n]*\b(SELECT\s[^"\n]*\bFROM\s+\w+|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+TABLE|'
    r"ALTER\s+TABLE|ON\s+CONFLICT|FOR\s+UPDATE)\b",
    re.IGNORECASE,
)


def test_no_sql_text_outside_store():
    found = [
        f"{rel(p)}:{n}: {line.strip()}"
        for p in rust_files()
        if not rel(p).startswith("src/store/")
        for n, line in enumerate(without_tests(p.read_text()).splitlines(), 1)
        if SQL.search(line)
    ]
    assert found == []


def test_the_sql_check_finds_sql():
    """The check above would see a query if one were written outside store/."""
    assert SQL.search('let q = "SELECT id FROM users WHERE id = $1";')
    assert SQL.search('"insert into users (id) values ($1)"')
    assert not SQL.search('"select a role for the user"')
    assert not SQL.search('"users to update: set one field"')


# Which top-level modules each may import. Requests flow down: a door calls `app`, `app` applies
# `domain` and calls `store`; `domain` imports nothing of roster but itself and the error type.
MAY_NOT_IMPORT = {
    "domain": {"app", "grpc", "http", "store", "tasks", "feed", "bus", "server", "config", "telemetry"},
    "store": {"app", "grpc", "http", "tasks", "feed", "bus", "server"},
    "app": {"grpc", "http", "server"},
    "grpc": {"store", "feed", "bus", "http"},
    "http": {"store", "feed", "bus", "grpc"},
    "tasks": {"app", "grpc", "http", "server"},
    "feed": {"app", "grpc", "http", "server"},
}


def crate_paths(text: str) -> set[str]:
    """Every `crate::a::b` path in `text`, with `use crate::{a, b::c}` trees expanded."""
    paths = set(re.findall(r"\bcrate::((?:\w+::)*\w+)", text))
    for tree in re.findall(r"\bcrate::\{([^;]*)\}", text, re.S):
        for item in re.split(r"[,\s]+", tree):
            if item and item[0].isalpha():
                paths.add(item.split("::{")[0])
    return paths


def test_requests_flow_one_way():
    broken = []
    for p in rust_files():
        parts = p.relative_to(SRC).parts
        if len(parts) < 2 or parts[0] not in MAY_NOT_IMPORT:
            continue
        forbidden = MAY_NOT_IMPORT[parts[0]]
        for path in crate_paths(without_tests(p.read_text())):
            top = path.split("::")[0]
            if top in forbidden:
                broken.append(f"{rel(p)} imports crate::{path}")
    assert broken == []


def module_files() -> dict[tuple[str, ...], Path]:
    """Module path -> file, for every file of the library crate."""
    files = {}
    for p in rust_files():
        parts = p.relative_to(SRC).with_suffix("").parts
        if parts in (("main",),):
            continue
        if parts[-1] in ("mod", "lib"):
            parts = parts[:-1]
        files[parts] = p
    return files


def use_targets(text: str, here: tuple[str, ...]) -> set[tuple[str, ...]]:
    """The module paths a file's `use` items and inline `crate::` paths name (before tests)."""
    text = without_tests(text)
    text = re.sub(r"//[^\n]*", "", text)
    found: set[tuple[str, ...]] = set()

    def expand(tree: str) -> list[str]:
        tree = tree.strip()
        i = tree.find("{")
        if i < 0:
            return [tree]
        prefix, inner = tree[:i], tree[i + 1 : tree.rfind("}")]
        items, depth, cur = [], 0, ""
        for ch in inner:
            depth += ch == "{"
            depth -= ch == "}"
            if ch == "," and depth == 0:
                items.append(cur)
                cur = ""
            else:
                cur += ch
        items.append(cur)
        return [prefix + e for item in items if item.strip() for e in expand(item)]

    paths = [p for tree in re.findall(r"\buse\s+([^;]+);", text) for p in expand(tree)]
    paths += ["crate::" + p for p in re.findall(r"\bcrate::((?:\w+::)*\w+)", text)]
    for path in paths:
        segs = [s.strip() for s in path.split(" as ")[0].split("::") if s.strip()]
        if not segs:
            continue
        if segs[0] == "crate":
            target = list(segs[1:])
        elif segs[0] in ("super", "self"):
            target = list(here)
            while segs and segs[0] in ("super", "self"):
                if segs.pop(0) == "super":
                    target = target[:-1]
            target += segs
        else:
            continue
        found.add(tuple(target))
    return found


def import_graph() -> dict[Path, set[Path]]:
    files = module_files()

    def file_of(target: tuple[str, ...]) -> Path | None:
        for k in range(len(target), 0, -1):
            if target[:k] in files:
                return files[target[:k]]
        return None

    graph: dict[Path, set[Path]] = {}
    for parts, p in files.items():
        edges = {file_of(t) for t in use_targets(p.read_text(), parts)}
        # A module file's `pub use child::X` re-exports are not imports of the child's users.
        graph[p] = {e for e in edges if e is not None and e != p}
    return graph


def cycles(graph: dict[Path, set[Path]]) -> list[list[Path]]:
    """Strongly connected components with more than one file (Tarjan)."""
    index: dict[Path, int] = {}
    low: dict[Path, int] = {}
    stack: list[Path] = []
    on: set[Path] = set()
    out: list[list[Path]] = []

    def visit(v: Path) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def test_no_file_imports_one_that_imports_it_back():
    # Parent module files (`mod.rs`, `lib.rs`) declare their children; that is not an import.
    graph = {
        v: {w for w in ws if not (w.name in ("mod.rs", "lib.rs") and v.is_relative_to(w.parent))}
        for v, ws in import_graph().items()
    }
    graph = {
        v: {w for w in ws if not (v.name in ("mod.rs", "lib.rs") and w.is_relative_to(v.parent))}
        for v, ws in graph.items()
    }
    found = [sorted(rel(p) for p in comp) for comp in cycles(graph)]
    assert found == []


def test_the_cycle_check_finds_a_cycle():
    a, b, c = Path("a.rs"), Path("b.rs"), Path("c.rs")
    assert cycles({a: {b}, b: {c}, c: {a}}) != []
    assert cycles({a: {b}, b: {c}, c: set()}) == []
