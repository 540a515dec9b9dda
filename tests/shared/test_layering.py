"""The import graph of shared/, emulator/ and deploy/, read with `ast` (imports inside functions count
as much as those at the top): no circle, and no arrow pointing up.

- no cycle among modules (a circle means neither side can be read, tested or moved alone);
- shared/ (what the functions deploy) never imports emulator/, deploy/, tests/ or functions/;
- shared/media/ (the media vocabulary and sources) imports nothing of rooms, pushes or recordings;
- shared/push/ and shared/record/ (two features) do not import each other;
- shared/contracts/ (the models at the edge) sits above nothing of the features.
"""
from __future__ import annotations

import ast
import functools
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("shared", "emulator", "deploy")
OUTSIDE = ("emulator", "deploy", "tests", "functions")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def graph() -> dict[str, set[str]]:
    """Module -> the modules of shared/, emulator/, deploy/ it imports; imports of tests/ and
    functions/ kept under their first two name parts (they are not in the graph, only pointed at)."""
    files = {_module_name(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}

    def resolve(name: str) -> str | None:
        if name.split(".")[0] in ("tests", "functions"):
            return ".".join(name.split(".")[:2])
        while name:
            if name in files:
                return name
            name = name.rpartition(".")[0]
        return None

    edges: dict[str, set[str]] = {}
    for module, path in files.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        out: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
            if isinstance(node, ast.Import):
                out.update(filter(None, (resolve(a.name) for a in node.names)))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                for a in node.names:  # `from pkg import module` imports the module, else the package
                    target = f"{base}.{a.name}"
                    found = resolve(target) if target in files else resolve(base)
                    if found:
                        out.add(found)
        out.discard(module)
        edges[module] = out
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in edges:
                continue
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

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def arrows(source: str, targets: tuple[str, ...]) -> list[str]:
    """Every import from a module under `source` to one under any of `targets`."""
    def under(module: str, prefix: str) -> bool:
        return module == prefix or module.startswith(prefix + ".")

    return sorted(f"{m} -> {t}" for m, out in graph().items() if under(m, source)
                  for t in out if any(under(t, p) for p in targets))


def _circles_text(found: list[list[str]]) -> str:
    return "; ".join(" <-> ".join(c) + " (" + ", ".join(f"{m} -> {sorted(set(graph()[m]) & set(c))}" for m in c) + ")"
                     for c in found)


def test_the_checker_sees_imports_inside_functions_and_relative_ones():
    edges = graph()
    assert "shared.media.hevc" in edges["shared.media.h264"]  # module level, `from shared.media import hevc`
    assert "shared.settings" in edges["shared.runtime"]
    assert "shared.media.reading" in edges["shared.media.decode"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_itself_back_through_a_circle():
    found = cycles(graph())
    assert not found, f"import circles: {_circles_text(found)}"


def test_shared_never_imports_the_emulator_deploy_tests_or_functions():
    assert not arrows("shared", OUTSIDE)


def test_media_imports_nothing_of_rooms_pushes_or_recordings():
    assert not arrows("shared.media", ("shared.room", "shared.push", "shared.record"))


def test_push_and_record_do_not_import_each_other():
    assert not arrows("shared.push", ("shared.record",))
    assert not arrows("shared.record", ("shared.push",))


def test_contracts_sit_above_nothing_of_the_features():
    assert not arrows("shared.contracts", ("shared.push", "shared.record"))
