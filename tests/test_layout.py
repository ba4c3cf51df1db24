"""
The house: the folders show the layers, each over private modules, and
the layers do not import each other in a circle.

Measured from the code itself (its files and the imports ast finds), so a
change that breaks a rule fails here, naming the place.
"""

import ast
from pathlib import Path

from tests.conftest import ROOT

PACKAGE = ROOT / "muxpool"

#: The library's private helper packages, used by every layer through
#: their faces.
HELPERS = {"muxpool._config", "muxpool._support"}

#: Those helpers are unit-tested through their packages' faces, by these
#: files alone; every other test imports what users import.
SUPPORT_TESTS = {"test_support.py", "test_deadlines.py", "test_boundaries.py"}


def modules():
    return sorted(PACKAGE.rglob("*.py"))


def dotted(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layerOf(module: str) -> str:
    """
    The layer a module belongs to: its subpackage, or the module itself
    when it sits directly in muxpool/.
    """
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "muxpool"


def typeCheckingBlocks(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from ast.walk(node)


def importsOf(path: Path):
    """
    The muxpool modules C{path} imports at run time (at any depth, lazy
    imports too; not those under C{if TYPE_CHECKING:}).
    """
    tree = ast.parse(path.read_text())
    skipped = {id(node) for node in typeCheckingBlocks(tree)}
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("muxpool"):
                for alias in node.names:
                    yield node.module, alias.name, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("muxpool"):
                    yield alias.name, None, node.lineno


def test_at_most_ten_modules_sit_directly_in_the_package():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 10, top


def test_the_layers_are_subpackages():
    layers = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists())
    assert len(layers) >= 5, layers
    for layer in layers:
        assert (PACKAGE / layer / "__init__.py").read_text().lstrip().startswith('"""'), layer


def test_no_module_is_over_700_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for p in modules()
        if (n := len(p.read_text().splitlines())) > 700
    }
    assert long == {}


def test_no_import_circle_between_layers():
    graph = {}
    for path in modules():
        if path == PACKAGE / "__init__.py":
            continue  # the public face imports every layer; no layer imports it
        source = layerOf(dotted(path))
        for module, _, _ in importsOf(path):
            target = layerOf(module) if module != "muxpool" else "muxpool"
            assert module != "muxpool", f"{path}: imports the package's public face"
            if target != source:
                graph.setdefault(source, set()).add(target)
    circles = []
    for start in graph:
        stack = [(start, [start])]
        while stack:
            node, trail = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    circles.append(" -> ".join(trail + [start]))
                elif nxt not in trail:
                    stack.append((nxt, trail + [nxt]))
    assert circles == []


def test_a_layer_is_entered_through_its_face():
    """
    Code in one layer imports another layer's public names, never its
    private modules.
    """
    reaching = []
    for path in modules():
        source = layerOf(dotted(path))
        for module, _, line in importsOf(path):
            private = [part for part in module.split(".")[1:] if part.startswith("_")]
            if layerOf(module) != source and private and module not in HELPERS:
                reaching.append(f"{path.relative_to(ROOT)}:{line}: {module}")
    assert reaching == []


def test_tests_import_public_names_only():
    private = []
    for path in sorted((ROOT / "tests").glob("*.py")) + sorted((ROOT / "benchmarks").glob("*.py")):
        for module, name, line in importsOf(path):
            parts = module.split(".")[1:] + ([name] if name else [])
            hidden = [part for part in parts if part.startswith("_")]
            if module in HELPERS and len(hidden) == 1 and path.name in SUPPORT_TESTS:
                continue
            if hidden:
                private.append(f"{path.relative_to(ROOT)}:{line}: {module} {name or ''}")
    assert private == []


def test_the_codec_imports_nothing_of_twisted():
    """
    The codec is sans-IO in fact: nothing muxpool/iso imports, directly or
    through the muxpool modules (and their packages) it imports, is
    Twisted.
    """
    files = {dotted(path): path for path in modules()}

    def thirdParty(path):
        tree = ast.parse(path.read_text())
        skipped = {id(node) for node in typeCheckingBlocks(tree)}
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                yield node.module
            elif isinstance(node, ast.Import):
                yield from (alias.name for alias in node.names)

    def withPackages(module):
        parts = module.split(".")
        return [".".join(parts[:i]) for i in range(2, len(parts) + 1)]

    seen, reached = set(), []
    todo = [m for m in files if m.startswith("muxpool.iso")]
    while todo:
        module = todo.pop()
        if module in seen or module not in files:
            continue
        seen.add(module)
        for name in thirdParty(files[module]):
            if name.startswith("muxpool"):
                todo.extend(withPackages(name))
            elif name.split(".")[0] == "twisted":
                reached.append(f"{module}: {name}")
    assert reached == []


def test_the_package_ships_its_types():
    assert (PACKAGE / "py.typed").is_file()
    assert "muxpool = py.typed" in (ROOT / "setup.cfg").read_text()
