"""The house rules of the layout, read from the source with ``ast``: the core reaches plugins only
through the registry, and no two modules of the core import each other (directly or around a loop)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from p2ptools import registry

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "p2ptools"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_block(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def imported_names(path: Path) -> set[str]:
    """Every module an import statement in ``path`` names, at any depth (functions included), except
    imports under ``if TYPE_CHECKING:``, which never run. ``from a import b`` yields ``a`` and ``a.b``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {id(n) for block in ast.walk(tree) if _type_checking_block(block) for n in ast.walk(block)}
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path}: relative import; the core uses absolute imports")
    return names


def core_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(CORE.rglob("*.py"))}


def plugin_packages() -> set[str]:
    """Top-level packages of every registered model plugin and dataset builder that is not the core."""
    packages = {"p2ptools_pix2pix", "p2ptools_datasets"}
    for kind in registry.GROUPS:
        for item in registry.list_plugins(kind):
            top = item.value.partition(":")[0].split(".")[0]
            if top != "p2ptools":
                packages.add(top)
    return packages


def test_the_reader_sees_imports_inside_functions_and_skips_type_checking_blocks(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import hidden\n"
                      "def f():\n    from p2ptools_pix2pix.options import X\n    import json\n")
    assert imported_names(sample) == {"typing", "typing.TYPE_CHECKING", "p2ptools_pix2pix.options",
                                      "p2ptools_pix2pix.options.X", "json"}


def test_no_core_module_imports_a_plugin_package():
    plugins = plugin_packages()
    offenders = sorted(f"{path.relative_to(ROOT)} imports {name}"
                       for path in CORE.rglob("*.py") for name in imported_names(path)
                       if name.split(".")[0] in plugins)
    assert offenders == [], "the core must reach plugins through p2ptools.registry:\n" + "\n".join(offenders)


def import_graph() -> dict[str, set[str]]:
    modules = core_modules()
    return {name: {i for i in imported_names(path) if i in modules and i != name} for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_the_cycle_finder_finds_a_loop_of_three():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_core_has_no_import_cycle():
    assert find_cycles(import_graph()) == []


def test_the_registry_depends_on_the_plugin_contract_and_not_the_reverse():
    graph = import_graph()
    assert "p2ptools.plugin" in graph["p2ptools.registry"]
    assert "p2ptools.registry" not in graph["p2ptools.plugin"]


@pytest.mark.parametrize("gone", ["p2ptools/build", "p2ptools/edges.py", "p2ptools/nets/hed.py"])
def test_old_locations_are_gone(gone):
    assert not (ROOT / gone).exists()


def test_the_command_line_starts_without_torch():
    """Importing the CLI imports no torch: `p2ptools --help` stays quick, and builds fork their
    workers (a process that initialised torch has to start them by forkserver, without the builder)."""
    import subprocess
    import sys

    code = "import sys, p2ptools.cli; print(sorted(m for m in ('torch', 'torchvision', 'onnx', 'onnxruntime') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
