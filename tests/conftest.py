"""Shared fixtures of the test suite: tolerances by dtype, seeded generators, GPU skips."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from sciml.testing import SimCuda

# the spectral layers' CPU cost model would otherwise measure this machine on first use (and
# cache it under ~/.cache): the suite runs on the built-in constants, the same everywhere
os.environ.setdefault("SCIML_CALIBRATION", "off")

# The ONE place where comparison tolerances live. Values are *relative*: a comparison
# passes when |actual - expected| <= tol * (|expected| + max|expected|), i.e. elementwise
# relative error with an absolute floor scaled by the size of the expected data.
TOL: dict[torch.dtype, float] = {
    torch.float16: 2e-2,
    torch.float32: 1e-5,
    torch.float64: 1e-12,
    torch.complex64: 1e-5,
    torch.complex128: 1e-12,
}

REAL_DTYPES = (torch.float32, torch.float64)

# finite-difference settings of torch.autograd.gradcheck / gradgradcheck (float64 only)
GRADCHECK = {"eps": 1e-6, "atol": 1e-8}


def tol_for(dtype: torch.dtype) -> float:
    return TOL[dtype]


def _to_numpy(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().resolve_conj().numpy()
    return np.asarray(a)


def assert_close_rel(actual, expected, dtype: torch.dtype, *, factor: float = 1.0, msg=""):
    """Assert ``actual`` matches ``expected`` to the dtype's tolerance (times ``factor``).

    ``expected`` may be a numpy array (float64/complex128 reference) or a tensor.
    """
    tol = TOL[dtype] * factor
    a = _to_numpy(actual)
    e = _to_numpy(expected)
    assert a.shape == e.shape, f"shape {a.shape} != expected {e.shape} {msg}"
    scale = float(np.max(np.abs(e))) if e.size else 0.0
    np.testing.assert_allclose(
        a.astype(np.complex128 if np.iscomplexobj(a) or np.iscomplexobj(e) else np.float64),
        e,
        rtol=tol,
        atol=tol * max(scale, 1e-300),
        err_msg=msg,
    )


@pytest.fixture
def close():
    """``close(actual, expected, dtype, factor=1.0)``: the dtype-aware assertion."""
    return assert_close_rel


@pytest.fixture
def tol():
    """The tolerance table (relative tolerance per dtype)."""
    return dict(TOL)


@pytest.fixture
def gen() -> torch.Generator:
    """A freshly seeded CPU torch.Generator (each test gets the same stream)."""
    g = torch.Generator()
    g.manual_seed(1234)
    return g


@pytest.fixture
def np_rng() -> np.random.Generator:
    return np.random.default_rng(1234)


_REAL_CUDA = torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    """Tests marked ``@pytest.mark.gpu`` run on the GPU when there is one; without one they
    run under simulated CUDA (:class:`sciml.testing.SimCuda`): on the CPU, with every
    device mix, ``numpy()`` of a cuda tensor and CPU generator for a cuda factory raised.
    ``SCIML_SKIP_GPU=1`` skips them instead."""
    if _REAL_CUDA or os.environ.get("SCIML_SKIP_GPU") != "1":
        return
    skip_gpu = pytest.mark.skip(reason="SCIML_SKIP_GPU=1 and no CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _simulated_cuda_for_gpu_tests(request):
    if _REAL_CUDA or request.node.get_closest_marker("gpu") is None:
        yield None
        return
    with SimCuda() as sim:
        yield sim


@pytest.fixture
def simcuda(request):
    """A :class:`sciml.testing.SimCuda` for the test (the real GPU is not simulated: on a
    CUDA machine the test runs under the simulation all the same, for its counts)."""
    if request.node.get_closest_marker("gpu") is not None and not _REAL_CUDA:
        raise RuntimeError("a gpu-marked test already runs under SimCuda: take "
                           "sciml.testing.simcuda.active() instead of the simcuda fixture")
    with SimCuda() as sim:
        yield sim
