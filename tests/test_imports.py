"""Light imports (issue 18): the library's subpackages load neither cvxpy nor matplotlib.

cvxpy, cvxpylayers and diffcp are imported when a convex layer is first built;
matplotlib only inside the functions that draw a figure. Each check runs in a fresh
interpreter, since this test process has long imported both.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("cvxpy", "cvxpylayers", "diffcp", "matplotlib")
SUBPACKAGES = ("inverse", "solvers", "spectral", "operators", "constraints")


def _run(code: str) -> None:
    """Run ``code`` in a fresh interpreter; fail with its stderr if it fails."""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]


def _check_light(modules: list[str]) -> str:
    return (
        "import sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + f"loaded = [k for k in {HEAVY!r} if k in sys.modules]\n"
        + f"assert not loaded, f'import of {', '.join(modules)} loaded {{loaded}}'\n"
    )


@pytest.mark.parametrize(
    "modules",
    [["sciml"]] + [[f"sciml.{p}"] for p in SUBPACKAGES] + [[f"sciml.{p}" for p in SUBPACKAGES]],
    ids=["sciml", *SUBPACKAGES, "together"],
)
def test_import_loads_neither_cvxpy_nor_matplotlib(modules: list[str]) -> None:
    _run(_check_light(modules))


def test_convex_layers_import_cvxpy_on_first_use() -> None:
    _run(
        _check_light(["sciml.constraints"])
        + "from sciml.constraints import ConvexProjection, ConvexHardConstraint\n"
        + "ConvexProjection(4)\n"
        + "assert 'cvxpy' in sys.modules and 'cvxpylayers' in sys.modules\n"
        + "ConvexHardConstraint(3, 2, n_ineq=1)\n"
    )
