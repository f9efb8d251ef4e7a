"""The layout's rules, checked on the source: imports form no cycle, modules and functions stay small."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"convae": ROOT / "convae", "convae.cli": ROOT / "cli", "convae.registry": ROOT / "registry"}


def _modules() -> dict[str, Path]:
    """Every library module by dotted name (``cli/`` and ``registry/`` install as ``convae.cli``/``.registry``)."""
    found = {}
    for prefix, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([prefix, *parts])] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The library modules ``path`` imports anywhere (module level or inside functions)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        out |= {n for n in names if n in modules}
    return out


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_library_imports_form_no_cycle():
    modules = _modules()
    # A package's __init__ that only names its package is not an edge (``import convae.x.y`` runs it first).
    graph = {m: {i for i in _imports(p, modules) if i != m and not m.startswith(i + ".")} for m, p in modules.items()}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_modules_and_functions_stay_small():
    """Library modules stay under ~350 lines and functions under ~60 (with a little slack)."""
    too_long = []
    for name, path in _modules().items():
        lines = path.read_text().splitlines()
        if not name.startswith("convae.cli") and len(lines) > 380:
            too_long.append(f"{name}: {len(lines)} lines")
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 70:
                too_long.append(f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert too_long == []


def test_the_flat_library_keeps_few_top_level_modules():
    assert len(list((ROOT / "convae").glob("*.py"))) <= 11


def test_shipped_weights_stay_within_the_budget():
    """The package ships weights only, under 20 MB in all (the repo stays lean)."""
    folder = ROOT / "convae" / "weights"
    total = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
    assert total < 20_000_000, f"convae/weights holds {total / 1e6:.2f} MB; retire a family to make room"
    assert {p.suffix for p in folder.iterdir() if p.is_file()} <= {".safetensors", ".json"}
