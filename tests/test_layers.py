"""Imports point down only (docs/ARCHITECTURE.md): a module never imports a layer above its own.

The layers are read from the import statements themselves, so a new upward import fails here rather than
surfacing later as a cycle or as logic creeping into an interface."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "src" / "mailmigrate"

# Lower number = lower layer.  Layers of equal rank do not import each other except where listed below.
RANK = {
    "": 0, "model": 0, "errors": 0,
    "formats": 1, "imap": 1,
    "stores": 2, "directory": 2,
    "sync": 3,
    "paths": 4, "fleet": 4,
    "workflow": 5,
    "dashboard": 6, "cli": 7, "__main__": 8,
}
# Sideways imports that the architecture names on purpose.
ALLOWED = {
    # the CommuniGate directory reader finds account files the way the CommuniGate store does
    ("directory", "stores"),
}


def _layer(module: str) -> str:
    parts = module.split(".")
    name = parts[1] if len(parts) > 1 else ""
    return name if name in RANK else ""  # mailmigrate.__version__ and the like belong to the package root


def _imports(path: Path):
    rel = path.relative_to(ROOT.parent).with_suffix("")
    module = ".".join(rel.parts)
    package = module.removesuffix(".__init__") if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield module, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                yield module, ".".join(base + ([node.module] if node.module else []))
            elif node.module:
                yield module, node.module


def test_no_module_imports_a_layer_above_its_own():
    upward = []
    for path in ROOT.rglob("*.py"):
        for module, target in _imports(path):
            if not target.startswith("mailmigrate"):
                continue
            a, b = _layer(module), _layer(target)
            if a == b or (a, b) in ALLOWED:
                continue
            if RANK[b] >= RANK[a]:
                upward.append(f"{module} imports {target}")
    assert upward == []


def test_the_check_sees_imports():
    """Guard against a check that passes because it reads nothing: the engine's own imports are found."""
    found = {t for m, t in _imports(ROOT / "sync" / "engine.py")}
    assert any(t.startswith("mailmigrate.stores") for t in found)
    assert {_layer(t) for t in found} - {"sync"}
