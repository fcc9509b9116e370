"""The package's layout rules: imports go one way (no circle), nothing imports the package root,
the model stays free of SpikeInterface, modules stay short."""
import ast
import importlib.util
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "crsae_sort"
MAX_LINES = 320  # "modules under ~300 lines"


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        yield path, name, package


def _edges():
    """module -> the package modules it imports (relative imports, resolved to existing modules)."""
    names = {name for _, name, _ in _modules()}
    edges = {}
    for path, name, package in _modules():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:
                    full = f"{stem}.{alias.name}"
                    target = full if full in names else stem
                    while target not in names:
                        target = target.rsplit(".", 1)[0]
                    targets.add(target)
        edges[name] = targets - {name}
    return edges


def test_no_import_circle_and_no_module_imports_the_package_root():
    edges = _edges()
    assert not [m for m, t in edges.items() if "crsae_sort" in t], "modules importing the package root"
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in edges.get(m, ()):
            assert state.get(t) != "open", f"import circle: {' -> '.join(stack[stack.index(t):] + [t])}"
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in edges:
        if m not in state:
            visit(m)


def test_every_relative_import_resolves():
    for path, name, package in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level and node.module:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + [node.module])
                assert importlib.util.find_spec(target) is not None, f"{path.name}:{node.lineno} imports {target}"


def test_the_model_is_torch_only():
    for path in (PACKAGE / "model").rglob("*.py"):
        text = path.read_text()
        assert "spikeinterface" not in text and "probeinterface" not in text, path


def test_modules_stay_short():
    long = {str(p.relative_to(PACKAGE)): n for p, _, _ in _modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long
