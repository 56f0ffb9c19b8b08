"""Keeps DESIGN.md's layers: a module imports only from its own layer or lower."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "sandbox"

LAYERS = {
    "errors": 0,
    "exitcodes": 0,
    "valueclass": 0,
    "config": 1,
    "oci": 1,
    "kernel": 1,
    "registry": 2,
    "store": 2,
    "security": 2,
    "cgroups": 2,
    "network": 2,
    "runtime": 3,
    "monitor": 4,
    "api": 6,
    "service": 5,
    "cli": 6,
}
# Within layer 2 each package has one job; these pairs must not know each other.
FORBIDDEN_SIBLINGS = {("store", "registry"), ("registry", "store"), ("cli", "api")}
# ... but for the one command that serves the API
API_COMMAND = PACKAGE / "cli" / "service.py"
# Modules only the named packages may import: one package speaks HTTP, one prints, one calls libc.
EXCLUSIVE_IMPORTS = {"requests": {"registry"}, "rich": {"cli"}, "typer": {"cli"}, "ctypes": {"kernel"}}


def imported_modules(source: str, package_parts: list[str]):
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package_parts[: len(package_parts) - node.level + 1]
                yield node.lineno, ".".join(base + ([node.module] if node.module else []))
            elif node.module:
                yield node.lineno, node.module


def violations(own: str, source: str, package_parts: list[str]) -> list[str]:
    found = []
    for lineno, module in imported_modules(source, package_parts):
        root, _, rest = module.partition(".")
        if root in EXCLUSIVE_IMPORTS and own not in EXCLUSIVE_IMPORTS[root]:
            found.append(f"line {lineno}: only {sorted(EXCLUSIVE_IMPORTS[root])} may import {root}")
        if root != "sandbox" or not rest:
            continue
        target = rest.split(".")[0]
        if target not in LAYERS:
            found.append(f"line {lineno}: sandbox.{target} is in no layer")
        elif LAYERS[target] > LAYERS[own]:
            found.append(f"line {lineno}: {own} (layer {LAYERS[own]}) imports {target} (layer {LAYERS[target]})")
        elif (own, target) in FORBIDDEN_SIBLINGS:
            found.append(f"line {lineno}: {own} must not import {target}")
    return found


def modules() -> list[Path]:
    return sorted(
        p
        for p in PACKAGE.rglob("*.py")
        if not (p.parent == PACKAGE and p.name in {"__init__.py", "__main__.py"})
    )


def own_layer(path: Path) -> str:
    return path.relative_to(PACKAGE).parts[0].removesuffix(".py")


def package_parts(path: Path) -> list[str]:
    return ["sandbox", *path.relative_to(PACKAGE).parent.parts]


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_respects_layers(path: Path):
    own = own_layer(path)
    assert own in LAYERS, f"{path} is in no layer of DESIGN.md"
    found = violations(own, path.read_text(), package_parts(path))
    if path == API_COMMAND:
        found = [item for item in found if not item.endswith("cli must not import api")]
    assert found == []


@pytest.mark.parametrize(
    ("own", "source"),
    [
        ("oci", "from sandbox.cli import main\n"),
        ("store", "import sandbox.registry.client\n"),
        ("registry", "from ..store import blobs\n"),
        ("oci", "import requests\n"),
        ("service", "from rich.console import Console\n"),
        ("service", "from sandbox.api import routes\n"),
        ("cli", "from sandbox.api.server import serve\n"),
    ],
)
def test_checker_catches_violations(own, source):
    assert violations(own, source, ["sandbox", own]) != []


def test_checker_allows_lower_layers():
    assert violations("cli", "from sandbox.service import images\nimport typer\n", ["sandbox", "cli"]) == []
