"""Settings are fixed when a solver or layer is built.

Every solver and layer object refuses an assignment to (or deletion of) one of its
settings with an ``AttributeError`` that says what to do instead: pass the per-call
argument where the call takes one (``max_iter=`` of the hard-constraint layers), or
build a new object. A per-call limit changes that call only. No code of the library, the
recipes, the examples or the benchmarks writes a layer's private attributes.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import torch

from sciml.constraints import (
    ChainedHardConstraint,
    ConvexHardConstraint,
    ConvexProjection,
    HardConstraint,
    MoEHardConstraint,
)
from sciml.inverse import MAP, Laplace
from sciml.solvers.linear import CG, DCDM, FlexibleCG
from sciml.solvers.ot import SNS, Sinkhorn

ROOT = Path(__file__).resolve().parents[1]


def _residual(c: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return c - y


# (factory, setting, a new value, per-call: whether the call takes the setting)
CASES = [
    (lambda: HardConstraint(_residual), "max_iter", 5, True),
    (lambda: HardConstraint(_residual), "tol", 1e-3, False),
    (lambda: HardConstraint(_residual), "ridge", 0.0, False),
    (lambda: HardConstraint(_residual), "residual", _residual, False),
    (lambda: MoEHardConstraint(_residual, 2), "max_iter", 5, True),
    (lambda: MoEHardConstraint(_residual, 2), "tol", 1e-3, False),
    (lambda: MoEHardConstraint(_residual, 2), "n_experts", 3, False),
    (lambda: MoEHardConstraint(_residual, 2), "distributed", False, False),
    (lambda: ChainedHardConstraint(_residual, 2, start_basis=0, start_target=1),
     "max_iter", 5, True),
    (lambda: ChainedHardConstraint(_residual, 2, start_basis=0, start_target=1),
     "ridge", 1.0, False),
    (lambda: ChainedHardConstraint(_residual, 2, start_basis=0, start_target=1),
     "start_basis", 1, False),
    (lambda: ConvexHardConstraint(4, 2), "ridge", 1.0, False),
    (lambda: ConvexHardConstraint(4, 2), "polish", False, False),
    (lambda: ConvexProjection(4), "nonneg", False, False),
    (lambda: ConvexProjection(4, upper=2.0), "upper", 1.0, False),
    (lambda: ConvexProjection(4), "polish", False, False),
    (lambda: CG(), "max_iter", 5, False),
    (lambda: CG(), "rtol", 1e-3, False),
    (lambda: FlexibleCG(), "atol", 1e-3, False),
    (lambda: DCDM(), "max_iter", 5, False),
    (lambda: Sinkhorn(), "max_iter", 5, False),
    (lambda: Sinkhorn(), "tol", 1e-3, False),
    (lambda: SNS(), "max_sinkhorn_iter", 50, False),
    (lambda: MAP(), "max_iter", 5, False),
    (lambda: MAP(), "gtol", 1e-3, False),
    (lambda: Laplace(), "rank", 3, False),
    (lambda: Laplace(), "max_iter", 3, False),
    (lambda: Laplace(), "tol", 1e-3, False),
]


@pytest.mark.parametrize("make, name, value, per_call", CASES,
                         ids=[f"{i}-{c[1]}" for i, c in enumerate(CASES)])
def test_a_setting_cannot_be_written_or_deleted(make, name, value, per_call) -> None:
    obj = make()
    before = getattr(obj, name)
    cls = type(obj).__name__
    fix = (f"pass {name}= to the call" if per_call else f"build a new {cls}")
    with pytest.raises(AttributeError, match=re.escape(fix)) as err:
        setattr(obj, name, value)
    assert f"{cls}.{name}" in str(err.value)
    with pytest.raises(AttributeError, match=re.escape(fix)):
        delattr(obj, name)
    assert getattr(obj, name) is before  # unchanged
    if dataclasses.is_dataclass(obj):  # the documented way to change one: a new object
        assert getattr(dataclasses.replace(obj, **{name: value}), name) == value


def test_private_state_of_the_layers_is_not_writable_either() -> None:
    for layer in (MoEHardConstraint(_residual, 2),
                  ChainedHardConstraint(_residual, 2, start_basis=0, start_target=1)):
        with pytest.raises(AttributeError, match="build a new"):
            layer._layer = HardConstraint(_residual, max_iter=1)
    with pytest.raises(AttributeError, match="build a new"):
        ConvexProjection(4)._lo = -1.0


def test_a_module_layer_still_switches_mode_and_moves() -> None:
    proj = ConvexProjection(3)
    proj.eval()
    assert not proj.training
    proj.train()
    assert proj.training
    y = torch.tensor([-1.0, 0.5, 2.0], dtype=torch.float64)
    torch.testing.assert_close(proj.double()(y).solution, y.clamp_min(0.0), rtol=0,
                               atol=1e-12)


def test_a_per_call_limit_changes_that_call_only() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.randn(3, 4, generator=g, dtype=torch.float64)

    def cubic(c: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return c**3 + c - y

    layer = HardConstraint(cubic, max_iter=50)
    short = layer(y, c0=torch.zeros(3, 4), max_iter=1)
    assert int(short.iterations.max()) <= 1 and not short.converged
    assert layer.max_iter == 50
    full = layer(y, c0=torch.zeros(3, 4))
    assert full.converged and int(full.iterations.max()) > 1


_SOURCES = [p for folder in ("sciml", "sciml_recipes", "benchmarks", "examples")
            for p in sorted((ROOT / folder).rglob("*.py"))]
# a write to a private limit or to the inner layer from outside the object itself, or an
# object.__setattr__ on anything but self (the one way round a read-only setting)
_PRIVATE_WRITE = re.compile(
    r"(?<!self)\.(_max_iter|_tol|_ridge|_rtol|_atol|_layer)\s*=(?!=)"
    r"|object\.__setattr__\((?!self\b)")


def test_no_code_writes_a_private_setting() -> None:
    assert _SOURCES, "no sources found"
    bad = []
    for path in _SOURCES:
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if _PRIVATE_WRITE.search(line):
                bad.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not bad, "private settings written from outside:\n" + "\n".join(bad)
