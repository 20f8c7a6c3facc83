"""The layers depend one way, modules stay small, imports form no circle."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("converters", "tfcompress")
MAX_LINES = 450


def _modules() -> dict:
    """``{dotted name: path}`` of every module of the two packages."""
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: pathlib.Path) -> set:
    """Project modules ``name`` imports, at any depth of its code."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def test_the_walk_sees_the_imports():
    # a walk that finds nothing proves nothing
    assert "converters.tflite.flatbuffer" in GRAPH["converters.targets.micro"]
    assert "converters.conversion.modes" in GRAPH["converters.conversion.artifact"]
    assert "tfcompress.keras2.env" in GRAPH["tfcompress.keras2.pruning"]


def test_converters_never_import_tfcompress():
    back = {name: sorted(m for m in deps if m.split(".")[0] == "tfcompress")
            for name, deps in GRAPH.items() if name.startswith("converters")}
    assert {k: v for k, v in back.items() if v} == {}


def test_no_import_circle():
    # Tarjan's strongly connected components; a component of two or more
    # modules is a circle
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert circles == []


@pytest.mark.parametrize("folder", ["tfcompress", "converters", "benchmarks"])
def test_modules_stay_small(folder):
    big = {str(p.relative_to(ROOT)): n for p in (ROOT / folder).rglob("*.py")
           if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert big == {}


def test_at_most_two_folder_levels():
    deep = [str(p.relative_to(ROOT)) for pkg in PACKAGES
            for p in (ROOT / pkg).rglob("*.py")
            if len(p.relative_to(ROOT / pkg).parts) > 3]
    assert deep == []


def test_every_package_names_its_modules():
    for pkg in (p for p in MODULES if MODULES[p].name == "__init__.py"):
        doc = ast.get_docstring(ast.parse(MODULES[pkg].read_text())) or ""
        children = [m.rsplit(".", 1)[1] for m in MODULES
                    if m.rpartition(".")[0] == pkg and not
                    m.rsplit(".", 1)[1].startswith("_")]
        if pkg in PACKAGES:
            continue  # the top packages list their public API instead
        missing = [c for c in children if c not in doc]
        assert missing == [], f"{pkg} docstring does not name {missing}"


@pytest.mark.parametrize("old,attr", [
    ("converters.micro", "check_compatible"),
    ("converters.micro", "validate"),
    ("converters.flatbuffer", "read"),
    ("tfcompress.pruning", "prune"),
    ("tfcompress.files", "atomic_write"),
])
def test_old_import_paths_warn_and_work(old, attr):
    import importlib
    import sys
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match="moved to"):
        module = importlib.import_module(old)
    assert callable(getattr(module, attr))
