"""Imports point down only (docs/ARCHITECTURE.md): a module never imports a layer above its own.

The layers are read from the import statements themselves, so a new upward import fails here rather than
surfacing later as a cycle or as logic creeping into an interface."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "src" / "mailmigrate"

# Lower number = lower layer.  Layers of equal rank do not import each other except where listed below.
RANK = {
    "": 0, "model": 0, "errors": 0, "credentials": 0,
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
    # the bottom layer: passwords are refused with a ConfigError, and model.Secret is credentials.Secret
    ("credentials", "errors"),
    ("model", "credentials"),
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


# --- cycles inside a layer --------------------------------------------------------------------------

#: Cycles that exist today, each to be broken by the restructuring of issue 20 (`issues show 20`): the test
#: stays green with them and fails on any other cycle, and on one of these once it is gone (so that the list
#: cannot keep hiding a cycle that comes back).
KNOWN_CYCLES: set[frozenset[str]] = set()  # issue 20 broke the last two (workflow actions/fleet, fleet app/tasks)


def _module_names() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _runtime_nodes(tree: ast.AST):
    """Every node, except what sits under ``if TYPE_CHECKING:`` (read by type checkers only, never run)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))


def _edges(path: Path, modules: dict[str, Path]):
    """The mailmigrate modules ``path`` imports when it runs, at the top or inside a function: ``from . import
    x`` names the module x, not its package; an import for type checkers only is no edge."""
    rel = path.relative_to(ROOT.parent).with_suffix("")
    module = ".".join(rel.parts).removesuffix(".__init__")
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            targets = [f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in modules:  # "mailmigrate.sync.state.StateDB" -> the module
                t = t.rpartition(".")[0]
            if t and t != module:
                yield module, t


def _cycles_inside_layers() -> set[frozenset[str]]:
    """Strongly connected groups of two or more modules of one layer (Tarjan's algorithm)."""
    modules = _module_names()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for m, path in modules.items():
        for a, b in _edges(path, modules):
            if _layer(a) == _layer(b):
                graph[a].add(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: set[frozenset[str]] = set()

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                found.add(frozenset(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_inside_a_layer():
    """A cycle between two modules of one package (even through an import inside a function) means neither
    can be understood, tested or moved alone; issue 20 breaks the ones there are."""
    found = _cycles_inside_layers()
    new = sorted(sorted(c) for c in found - KNOWN_CYCLES)
    gone = sorted(sorted(c) for c in KNOWN_CYCLES - found)
    assert new == [], f"import cycles inside a layer: {new}"
    assert gone == [], f"these cycles are gone: remove them from KNOWN_CYCLES: {gone}"


def test_the_cycle_check_sees_imports_inside_functions():
    """Guard against a check that passes because it reads nothing: workflow/actions.py imports workflow/fleet.py
    only inside functions, and that edge is found."""
    modules = _module_names()
    edges = set(_edges(modules["mailmigrate.workflow.actions"], modules))
    assert ("mailmigrate.workflow.actions", "mailmigrate.workflow.fleet") in edges
