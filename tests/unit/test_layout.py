"""The folder list is the architecture: every module is on its package's map, nothing runs up.

Each package's docstring has a "Map of the package" naming its modules and sub-packages in
double backquotes; a module missing from it fails here, so the maps cannot go stale. Layers:
``gateway`` (transports, fan-out, wiring) uses ``handlers`` (the rules), which use ``storage``
and ``media``; no module imports a layer above its own, at module level or inside a function.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = {"gateway": 3, "handlers": 2, "storage": 1, "media": 1}
"""A module may import its own layer and the layers below it (a lower number)."""


def packages() -> list[Path]:
    return sorted(
        init.parent
        for top in LAYERS
        for init in (ROOT / top).rglob("__init__.py")
        if "__pycache__" not in init.parts
    )


def members(package: Path) -> set[str]:
    """The modules and sub-packages of ``package``, by name."""
    found = {p.stem for p in package.glob("*.py") if p.stem != "__init__"}
    found |= {p.name for p in package.iterdir() if (p / "__init__.py").is_file()}
    return found


@pytest.mark.parametrize("package", packages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_module_is_on_its_package_map(package: Path) -> None:
    dotted = ".".join(package.relative_to(ROOT).parts)
    doc = importlib.import_module(dotted).__doc__ or ""
    assert "Map of the package" in doc, f"{dotted} has no map in its docstring"
    named = set(re.findall(r"``(\w+)``", doc))
    missing = sorted(members(package) - named)
    assert not missing, f"{dotted}'s map does not name {missing}"


def imported(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every import in the file, wherever it stands."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def test_no_module_imports_a_layer_above_its_own() -> None:
    upward = []
    for top, level in LAYERS.items():
        for path in sorted((ROOT / top).rglob("*.py")):
            for line, package in imported(path):
                if LAYERS.get(package, 0) > level:
                    upward.append(f"{path.relative_to(ROOT)}:{line} imports {package}")
    assert not upward, "\n".join(upward)


def test_the_checks_see_a_stale_map_and_an_upward_import(tmp_path: Path) -> None:
    """The two rules above catch what they are for (on a throwaway package)."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text('"""Map of the package:\n- ``a``: one.\n"""\n')
    (package / "a.py").write_text("def f() -> None:\n    import gateway\n")
    (package / "b.py").write_text("")
    assert members(package) - {"a"} == {"b"}
    assert (2, "gateway") in imported(package / "a.py")


def module_imports(path: Path, modules: set[str]) -> set[str]:
    """The project modules ``path`` imports when it is loaded (imports under
    ``if TYPE_CHECKING:`` and inside functions do not run then). ``from pkg import module``
    imports the module; ``pkg`` itself only when a name of its own is taken from it."""
    found: set[str] = set()
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
    return found & modules


def module_graph() -> dict[str, set[str]]:
    paths: dict[str, Path] = {}
    for top in LAYERS:
        for path in (ROOT / top).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    names = set(paths)
    return {name: module_imports(path, names) - {name} for name, path in paths.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_circle_between_modules() -> None:
    found = cycles(module_graph())
    assert not found, f"modules that import each other, in a ring: {found}"


def test_no_import_circle_between_the_gateways_sub_packages() -> None:
    """``gateway/ws`` may use ``gateway/http`` or the other way round, not both; the same for
    every pair (and longer rings) of ``gateway``'s sub-packages."""
    between: dict[str, set[str]] = {}
    for name, imports in module_graph().items():
        parts = name.split(".")
        if parts[0] != "gateway" or len(parts) < 3:
            continue  # the top-level wiring (app, keys, settings) sees everything
        for other in imports:
            theirs = other.split(".")
            if theirs[0] == "gateway" and len(theirs) >= 3 and theirs[1] != parts[1]:
                between.setdefault(parts[1], set()).add(theirs[1])
    found = cycles(between)
    assert not found, f"sub-packages of gateway that import each other, in a ring: {found}"


def test_the_circle_check_sees_a_circle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
