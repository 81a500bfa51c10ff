"""The direction of imports that docs/architecture.md describes, checked on the source:
each outside library and each layer of otactl is imported only where it belongs."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "otactl"

# library (top-level name) -> the otactl packages allowed to import it at run time
CONFINED = {
    "typer": ("otactl.cli",),
    "click": ("otactl.cli",),
    "rich": ("otactl.cli",),
    "kubernetes": ("otactl.kube",),
    "urllib3": ("otactl.kube",),
    "google": ("otactl.gke",),
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool) -> list[str]:
    """Every module imported at run time (anywhere: top level or inside a function), as an
    absolute name; imports under `if TYPE_CHECKING:` are left out."""
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                prefix = ".".join(base)
                target = f"{prefix}.{node.module}" if node.module else prefix
            else:
                target = node.module or ""
            found.append(target)
            found.extend(f"{target}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _all_imports() -> dict[str, list[str]]:
    result = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        result[module] = _imports(ast.parse(path.read_text()), module, path.name == "__init__.py")
    return result


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


IMPORTS = _all_imports()


@pytest.mark.parametrize("library", sorted(CONFINED))
def test_each_outside_library_stays_in_its_layer(library: str) -> None:
    allowed = CONFINED[library]
    offenders = sorted(
        module
        for module, names in IMPORTS.items()
        if any(name.split(".")[0] == library for name in names)
        and not any(_within(module, package) for package in allowed)
    )
    assert offenders == [], f"{library} imported outside {allowed}: {offenders}"


def test_the_core_never_imports_the_cli() -> None:
    offenders = sorted(
        module
        for module, names in IMPORTS.items()
        if not _within(module, "otactl.cli")
        and module != "otactl.__main__"
        and any(_within(name, "otactl.cli") for name in names)
    )
    assert offenders == [], f"core modules importing otactl.cli: {offenders}"


def test_the_check_sees_imports_inside_functions_and_relative_ones() -> None:
    """The rules above are only as good as the import finder: it must see a lazy import in
    a function body and a relative import, and skip a TYPE_CHECKING block."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import typer\n"
        "def f():\n    import kubernetes.client\n"
        "from .sibling import name\n"
        "from .. import errors\n"
    )
    names = _imports(ast.parse(source), "otactl.pkg.mod", is_package=False)
    assert "kubernetes.client" in names
    assert "otactl.pkg.sibling.name" in names
    assert "otactl.errors" in names
    assert "typer" not in names
