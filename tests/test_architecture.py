"""The shape of the code, checked: no import cycle in ``nationmap/``, predictor actors that do not
import the driver's libraries, functions short enough to read at once (or saying why not), and
one constant per record format."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nationmap"
MAX_LINES = 60
LONG_REASON = re.compile(r"#\s*long:")  # "# long: <why>" in the function's first lines


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:`` (annotations only, never run)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in [child, *_runtime_nodes(child)])
            continue
        yield node
        yield from _runtime_nodes(node)


def import_graph() -> dict[str, set[str]]:
    """Module -> the nationmap modules it imports when run, at any level (functions included)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        deps = set()
        for node in _runtime_nodes(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("nationmap"):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    deps.add(full if full in modules else node.module)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("nationmap")}
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_planted_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_import_graph_sees_function_imports_and_skips_type_checking_blocks(tmp_path):
    tree = ast.parse("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import nationmap.a\n"
                     "def f():\n    import nationmap.b\n")
    names = {a.name for n in _runtime_nodes(tree) if isinstance(n, ast.Import) for a in n.names}
    assert names == {"nationmap.b"}


def test_no_import_cycle_in_nationmap():
    assert cycles(import_graph()) == []


def test_predictor_actors_do_not_import_the_driver_side():
    """What a predictor actor imports (its class and the model side): no xarray, dask, pystac,
    matplotlib or shapely, which only the driver and the cell tasks need."""
    code = ("import sys, nationmap.infer.ray_data, nationmap.infer.predict; "
            "print(' '.join(m for m in ('xarray', 'dask', 'pystac', 'matplotlib', 'shapely') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == []


def long_functions() -> list[str]:
    """``path:function (lines)`` of every function over MAX_LINES without a ``# long: why`` comment."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                head = "\n".join(lines[node.lineno - 1:node.lineno + 12])
                if length > MAX_LINES and not LONG_REASON.search(head):
                    found.append(f"{path.relative_to(PACKAGE.parent)}:{node.name} ({length})")
    return found


def test_functions_are_short_or_say_why():
    assert long_functions() == []


def test_each_record_format_is_declared_once():
    """A format string such as ``nationmap-run/1`` appears once in the code, in records.py."""
    counts: dict[str, list[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for fmt in re.findall(r"[\"'](nationmap-[a-z-]+/\d+)[\"']", path.read_text()):
            counts.setdefault(fmt, []).append(path.name)
    repeated = {fmt: files for fmt, files in counts.items() if len(files) > 1}
    assert repeated == {}
