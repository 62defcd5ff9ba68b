"""The layout (issue 18): the library never imports the recipes, and the recipes, the
examples and the benchmarks use only the library's public API.

Every ``import`` and ``from ... import`` statement of every module is read from its
source (function-level imports included, relative imports resolved), so a forbidden
import is found even on a code path no other test runs. A last check imports every
library module in a fresh interpreter and looks at what got loaded.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "sciml"
RECIPES = ROOT / "sciml_recipes"
# the library must not reach for any of these: recipes, demo, CLI, plotting, benchmarks
FORBIDDEN = ("sciml_recipes", "matplotlib", "benchmarks", "argparse")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module: str | None = None) -> list[tuple[int, str, list[str]]]:
    """(line, absolute module, imported names) of every import statement in ``path``
    (a module called ``module``, by default the name its place in the repository gives)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    module = module or _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append((node.lineno, name, [a.name for a in node.names]))
    return out


def _py_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def _private_use(module: str, names: list[str]) -> str | None:
    """Why importing ``names`` from ``module`` is not the public API of sciml, or None."""
    parts = module.split(".")
    if parts[0] != "sciml":
        return None
    private = [p for p in parts if p.startswith("_")]
    if private:
        return f"private module {module}"
    bad = [n for n in names if n.startswith("_")]
    if bad:
        return f"private name(s) {bad} from {module}"
    return None


def test_the_walk_sees_relative_and_nested_imports(tmp_path: Path) -> None:
    # the checker itself, on a module that hides its imports in a function
    src = tmp_path / "m.py"
    src.write_text("import os\n"
                   "def f():\n"
                   "    from ..train._checkpoint import save\n"
                   "    from . import _common\n"
                   "    import matplotlib.pyplot as plt\n")
    found = _imports(src, "sciml.solvers.ot.m")
    assert [(m, n) for _, m, n in found] == [
        ("os", []), ("sciml.solvers.train._checkpoint", ["save"]),
        ("sciml.solvers.ot", ["_common"]), ("matplotlib.pyplot", []),
    ]
    assert _private_use("sciml.train._checkpoint", ["save"]) is not None
    assert _private_use("sciml.train", ["_stack"]) is not None
    assert _private_use("sciml.train", ["Trainer"]) is None


@pytest.mark.parametrize("path", _py_files(LIBRARY), ids=lambda p: str(p.relative_to(ROOT)))
def test_library_imports_no_recipe_demo_cli_plotting_or_benchmark(path: Path) -> None:
    bad = [
        f"line {line}: {mod}"
        for line, mod, _ in _imports(path)
        if mod.split(".")[0] in FORBIDDEN
    ]
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}; the library must not"


SCRIPTS = _py_files(RECIPES) + _py_files(ROOT / "examples") + _py_files(ROOT / "benchmarks")
# internals a benchmark times on purpose (the stepper table against the public solver, the
# transform paths against each other, the allocator setting the solver makes itself)
BENCHMARK_INTERNALS = {"sciml._malloc", "sciml.pdes._steppers", "sciml.spectral._paths"}


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_recipes_examples_and_benchmarks_use_only_the_public_api(path: Path) -> None:
    allowed = BENCHMARK_INTERNALS if path.parent.name == "benchmarks" else set()
    bad = [
        f"line {line}: {why}"
        for line, mod, names in _imports(path)
        if mod not in allowed and (why := _private_use(mod, names))
    ]
    assert not bad, f"{path.relative_to(ROOT)} reaches past the public API: {bad}"


def test_importing_every_library_module_loads_no_recipe() -> None:
    modules = [_module_name(p) for p in _py_files(LIBRARY)]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('sciml_recipes',))\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
