"""The package's shape: every module imports anywhere and without cycles, and no function
takes more than five positional parameters."""
import ast
from pathlib import Path

import subprocess
import sys


def test_every_module_imports_without_posix_only_modules():
    # Windows has no fcntl, resource, termios, grp or pwd: importing the package
    # there must not fail (lock.py relies on filelock, which picks the OS's lock).
    script = (
        "import sys, pkgutil, importlib, warnings\n"
        "warnings.simplefilter('ignore')\n"
        "for name in ('fcntl', 'resource', 'termios', 'grp', 'pwd'):\n"
        "    sys.modules[name] = None\n"
        "import datakit_data\n"
        "names = [m.name for m in pkgutil.iter_modules(datakit_data.__path__)]\n"
        "for name in names:\n"
        "    importlib.import_module('datakit_data.' + name)\n"
        "print(len(names))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 15


PACKAGE = Path(__file__).parent.parent / "datakit_data"


def _module_imports(path: Path) -> set[str]:
    """The package modules a module imports at its top level, for its types too (under
    TYPE_CHECKING); imports inside functions are left out."""
    tree = ast.parse(path.read_text())
    found = set()
    top = [*tree.body, *(inner for node in tree.body if isinstance(node, ast.If) for inner in node.body)]
    for node in top:
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("datakit_data."):
            found.add(node.module.split(".")[1])
    return found


def test_the_modules_import_each_other_without_a_cycle():
    graph = {path.stem: _module_imports(path) for path in PACKAGE.glob("*.py")}
    assert len(graph) >= 20 and graph["commands"], graph  # the walk found the package
    done, cycles = set(), []

    def visit(module: str, trail: list[str]) -> None:
        if module in trail:
            cycles.append(trail[trail.index(module):] + [module])
            return
        if module in done:
            return
        for imported in sorted(graph.get(module, ())):
            visit(imported, trail + [module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
    assert cycles == [], "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_no_function_takes_more_than_five_positional_parameters():
    offenders = []
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text())
        methods = {id(f) for c in ast.walk(tree) if isinstance(c, ast.ClassDef)
                   for f in c.body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))}
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                positional = [*node.args.posonlyargs, *node.args.args]
                static = any(ast.unparse(d) == "staticmethod" for d in getattr(node, "decorator_list", ()))
                if id(node) in methods and not static:
                    positional = positional[1:]  # self or cls
                if len(positional) > 5:
                    offenders.append(f"{path.name}:{node.lineno} {getattr(node, 'name', 'lambda')} "
                                     f"({len(positional)})")
    assert offenders == []
