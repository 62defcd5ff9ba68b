"""Garbage in, clear error out: public entry points fuzzed with wrong inputs.

Every public function and class of the modules below is called with each of a set of
bad values (None, strings, negative and zero sizes, NaN, Inf, empty tensors, tensors of
the wrong kind, numpy arrays, booleans) in every required argument. Each call must
either work or raise ``ValueError`` / ``TypeError`` (the library's boundary checks,
which name the argument and the fix); an ``AttributeError``, ``IndexError``,
``ZeroDivisionError`` or raw torch ``RuntimeError`` from deep inside is a failure.
The list of modules grows as the library's entry points are brought to this standard.
"""

from __future__ import annotations

import importlib
import inspect

import numpy as np
import pytest
import torch

MODULES = ["sciml.spectral", "sciml.pdes", "sciml.pdes.poisson", "sciml.solvers.linear",
           "sciml.solvers.ot", "sciml.inverse", "sciml.operators", "sciml.data", "sciml.train",
           "sciml.constraints"]
BAD = [None, "x", -1, 0, 1.5, float("nan"), float("inf"), (), [], torch.zeros(0),
       torch.full((3,), float("nan")), torch.zeros(2, 3, dtype=torch.int64), np.zeros(3),
       True]
# an optional dependency that is not installed, or a file that is not there, is a clear
# error of its own
CLEAR = (ValueError, TypeError, ImportError, FileNotFoundError)


def _entry_points():
    for mname in MODULES:
        m = importlib.import_module(mname)
        for name in m.__all__:
            f = getattr(m, name)
            if not callable(f) or (inspect.isclass(f) and issubclass(f, BaseException)):
                continue
            if inspect.isclass(f) and issubclass(f, int):  # enums of ints (CellType)
                continue
            try:
                sig = inspect.signature(f)
            except (TypeError, ValueError):
                continue
            required = [p for p in sig.parameters.values() if p.default is p.empty
                        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            if required:
                yield pytest.param(f, len(required), id=f"{mname}.{name}")


@pytest.mark.parametrize("f, n_args", list(_entry_points()))
def test_bad_input_gets_a_clear_error(f, n_args):
    unclear = {}
    for v in BAD:
        try:
            f(*([v] * n_args))
        except CLEAR:
            pass
        except Exception as e:  # anything else is a crash from inside the library
            unclear.setdefault(type(e).__name__, []).append(repr(v)[:30])
    assert not unclear, f"unclear errors for bad input: {unclear}"


def _settings():
    import dataclasses

    for mname in MODULES:
        m = importlib.import_module(mname)
        for name in m.__all__:
            cls = getattr(m, name)
            if not (inspect.isclass(cls) and dataclasses.is_dataclass(cls)) or \
                    name.endswith("Result"):
                continue  # a result record is written by the library, not by the user
            params = inspect.signature(cls).parameters.values()
            if any(p.default is p.empty for p in params):
                continue  # results and records, not settings
            for p in params:
                if not p.name.startswith("_"):
                    yield pytest.param(cls, p.name, id=f"{mname}.{name}.{p.name}")


@pytest.mark.parametrize("cls, field", list(_settings()))
def test_settings_refuse_strings_nan_and_tensors(cls, field):
    """A frozen settings object checks every field when it is made: a string, a NaN or a
    tensor is never a valid setting, and is refused by name rather than failing later."""
    for v in ("x", float("nan"), torch.zeros(2)):
        with pytest.raises((ValueError, TypeError), match=field):
            cls(**{field: v})


def test_calibration_refuses_empty_and_non_finite_input():
    from sciml.inverse import calibration

    e = torch.tensor([0.1, -0.5, 2.5])
    s = torch.ones(3)
    assert calibration(e, s) == pytest.approx(2 / 3)
    for bad, match in ((torch.zeros(0), "empty"), (torch.tensor([float("nan")] * 3), "non-finite")):
        with pytest.raises(ValueError, match=match):
            calibration(bad, bad if bad.numel() == 0 else s)
    with pytest.raises(ValueError, match="negative"):
        calibration(e, -s)
