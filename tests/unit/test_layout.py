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
