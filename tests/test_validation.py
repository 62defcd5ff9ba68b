"""Invalid inputs to every public entry point of sciml.spectral.

Each must raise a ValueError (right kind of object, bad value) or a TypeError (wrong
kind of object) whose message NAMES the offending argument, never an IndexError /
RuntimeError / AssertionError from deep inside torch or the library.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import TOL
from hypothesis import given, settings
from hypothesis import strategies as st

from sciml.spectral import (
    SpectralConv,
    check_modes,
    dealias,
    dealias_mask,
    gradient,
    inverse_laplacian,
    irfftn_truncated,
    laplacian,
    rfftn_truncated,
    sobolev_norm,
    wavenumbers,
)

F64 = torch.float64


def field(*shape, dtype=F64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0), dtype=dtype)


def with_value(t: torch.Tensor, value: float) -> torch.Tensor:
    t = t.clone()
    t.view(-1)[3] = value
    return t


X = field(2, 16, 16)
C = rfftn_truncated(X, (4, 5))  # (2, 8, 5)
LAYER = SpectralConv(3, 2, (4, 5), dtype=F64)
XL = field(2, 3, 16, 16)


def P(fn, exc, match, id_):
    return pytest.param(fn, exc, match, id=id_)


RFFTN = [
    P(lambda: rfftn_truncated(X.tolist(), (4, 5)), TypeError, r"\bx\b must be a torch\.Tensor",
      "list"),
    P(lambda: rfftn_truncated(X.to(torch.int64), (4, 5)), TypeError, r"\bx\b must be a real",
      "int-tensor"),
    P(lambda: rfftn_truncated(X.to(torch.complex128), (4, 5)), TypeError,
      r"\bx\b must be a real", "complex-tensor"),
    P(lambda: rfftn_truncated(X.to(torch.bool), (4, 5)), TypeError, r"\bx\b must be a real",
      "bool-tensor"),
    P(lambda: rfftn_truncated(field(16), (4, 5)), ValueError, r"\bx\b needs at least 2",
      "too-few-axes"),
    P(lambda: rfftn_truncated(X, (9, 5)), ValueError, r"modes\[0\] = 9 is too large",
      "modes-full-axis"),
    P(lambda: rfftn_truncated(X, (4, 10)), ValueError, r"modes\[1\] = 10 is too large",
      "modes-halved-axis"),
    P(lambda: rfftn_truncated(field(2, 15, 15), (8, 4)), ValueError,
      r"modes\[0\] = 8 is too large", "modes-odd-full-axis"),
    P(lambda: rfftn_truncated(X, (0, 5)), ValueError, r"modes\[0\] must be >= 1", "modes-zero"),
    P(lambda: rfftn_truncated(X, (4, -2)), ValueError, r"modes\[1\] must be >= 1",
      "modes-negative"),
    P(lambda: rfftn_truncated(X, (True, 5)), TypeError, r"modes\[0\] must be an int",
      "modes-bool-entry"),
    P(lambda: rfftn_truncated(X, True), TypeError, r"\bmodes\b", "modes-bool"),
    P(lambda: rfftn_truncated(X, (4.0, 5)), TypeError, r"modes\[0\] must be an int",
      "modes-float-entry"),
    P(lambda: rfftn_truncated(X, 2.5), TypeError, r"\bmodes\b", "modes-float"),
    P(lambda: rfftn_truncated(X, None), TypeError, r"\bmodes\b", "modes-None"),
    P(lambda: rfftn_truncated(X, (4, 5, 2), ndim=2), ValueError, r"modes must have 2 entries",
      "modes-length"),
    P(lambda: rfftn_truncated(X, 4, ndim=True), TypeError, r"\bndim\b", "ndim-bool"),
    P(lambda: rfftn_truncated(X, 4, ndim=0), ValueError, r"\bndim\b", "ndim-zero"),
    P(lambda: rfftn_truncated(X, 4, ndim=1.5), TypeError, r"\bndim\b", "ndim-float"),
    P(lambda: rfftn_truncated(with_value(X, math.nan), (4, 5)), ValueError,
      r"\bx\b contains 1 non-finite", "nan"),
    P(lambda: rfftn_truncated(with_value(X, math.inf), (4, 5), method="dft"), ValueError,
      r"\bx\b contains 1 non-finite", "inf-dft"),
    P(lambda: rfftn_truncated(with_value(X, -math.inf), (4, 5), method="fft"), ValueError,
      r"\bx\b contains 1 non-finite", "neg-inf-fft"),
    P(lambda: rfftn_truncated(X, (4, 5), method="fast"), ValueError, r"method must be one of",
      "method"),
    P(lambda: rfftn_truncated(X, (4, 5), method=None), ValueError, r"method must be one of",
      "method-None"),
]

IRFFTN = [
    P(lambda: irfftn_truncated(C.tolist(), (16, 16)), TypeError, r"\bc\b must be a torch\.Tensor",
      "list"),
    P(lambda: irfftn_truncated(C.real, (16, 16)), TypeError, r"\bc\b must be a complex",
      "real-tensor"),
    P(lambda: irfftn_truncated(C.real.to(torch.int32), (16, 16)), TypeError,
      r"\bc\b must be a complex", "int-tensor"),
    P(lambda: irfftn_truncated(C[0, 0], (16, 16)), ValueError, r"\bc\b needs at least 2",
      "too-few-axes"),
    P(lambda: irfftn_truncated(C, (6, 16)), ValueError, r"modes implied by c\[0\] = 4.*shape",
      "shape-too-small"),
    P(lambda: irfftn_truncated(C, (16, 7)), ValueError, r"modes implied by c\[1\] = 5.*shape",
      "shape-too-small-halved"),
    P(lambda: irfftn_truncated(C, (0, 16)), ValueError, r"shape\[0\] must be >= 1", "shape-zero"),
    P(lambda: irfftn_truncated(C, (16, -3)), ValueError, r"shape\[1\] must be >= 1",
      "shape-negative"),
    P(lambda: irfftn_truncated(C, (16.0, 16)), TypeError, r"shape\[0\] must be an int",
      "shape-float"),
    P(lambda: irfftn_truncated(C, True), TypeError, r"\bshape\b", "shape-bool"),
    P(lambda: irfftn_truncated(C, (16, False)), TypeError, r"shape\[1\]", "shape-bool-entry"),
    P(lambda: irfftn_truncated(C, "16"), TypeError, r"\bshape\b", "shape-str"),
    P(lambda: irfftn_truncated(C, ()), ValueError, r"\bshape\b", "shape-empty"),
    P(lambda: irfftn_truncated(C[:, :7], (16, 16)), ValueError, r"\bc\b", "odd-full-axis"),
    P(lambda: irfftn_truncated(C, (16, 16), method="FFT"), ValueError, r"method must be one of",
      "method"),
]

CONV_INIT = [
    P(lambda: SpectralConv(0, 2, (4, 5)), ValueError, r"in_channels must be >= 1", "in-zero"),
    P(lambda: SpectralConv(True, 2, (4, 5)), TypeError, r"in_channels must be an int", "in-bool"),
    P(lambda: SpectralConv(2.0, 2, (4, 5)), TypeError, r"in_channels must be an int", "in-float"),
    P(lambda: SpectralConv(3, -1, (4, 5)), ValueError, r"out_channels must be >= 1",
      "out-negative"),
    P(lambda: SpectralConv(3, False, (4, 5)), TypeError, r"out_channels must be an int",
      "out-bool"),
    P(lambda: SpectralConv(3, 2, (0, 5)), ValueError, r"modes\[0\] must be >= 1", "modes-zero"),
    P(lambda: SpectralConv(3, 2, (True, 5)), TypeError, r"modes\[0\] must be an int",
      "modes-bool"),
    P(lambda: SpectralConv(3, 2, ()), ValueError, r"modes must name 1 to 3", "modes-empty"),
    P(lambda: SpectralConv(3, 2, (2, 2, 2, 2)), ValueError, r"modes must name 1 to 3",
      "modes-4d"),
    P(lambda: SpectralConv(3, 2, "45"), TypeError, r"\bmodes\b", "modes-str"),
    P(lambda: SpectralConv(3, 2, (4, 5), out_shape=(4, 16)), ValueError,
      r"modes\[0\] = 4 is too large for out_shape", "out-shape-too-small"),
    P(lambda: SpectralConv(3, 2, (4, 5), out_shape=(16,)), ValueError,
      r"out_shape must have 2 entries", "out-shape-length"),
    P(lambda: SpectralConv(3, 2, (4, 5), out_shape=(0, 16)), ValueError,
      r"out_shape\[0\] must be >= 1", "out-shape-zero"),
    P(lambda: SpectralConv(3, 2, (4, 5), method="pruned"), ValueError, r"method must be one of",
      "method"),
    P(lambda: SpectralConv(3, 2, (4, 5), dtype=torch.float16), TypeError, r"\bdtype\b",
      "dtype-half"),
    P(lambda: SpectralConv(3, 2, (4, 5), dtype=torch.complex64), TypeError, r"\bdtype\b",
      "dtype-complex"),
    P(lambda: SpectralConv(3, 2, (4, 5), dtype=torch.int32), TypeError, r"\bdtype\b",
      "dtype-int"),
]

CONV_FORWARD = [
    P(lambda: LAYER(XL.tolist()), TypeError, r"\bx\b must be a torch\.Tensor", "list"),
    P(lambda: LAYER(XL.to(torch.int64)), TypeError, r"\bx\b must be a real", "int-tensor"),
    P(lambda: LAYER(XL.to(torch.complex128)), TypeError, r"\bx\b must be a real", "complex"),
    P(lambda: LAYER(XL[0]), ValueError, r"\bx\b must have shape \(batch, channels, n1, n2\)",
      "ndim-low"),
    P(lambda: LAYER(XL[None]), ValueError, r"\bx\b must have shape", "ndim-high"),
    P(lambda: LAYER(field(2, 4, 16, 16)), ValueError, r"\bx\b has 4 channels.*in_channels=3",
      "channels"),
    P(lambda: LAYER(XL.float()), TypeError, r"\bx\b has dtype torch\.float32", "dtype-mismatch"),
    P(lambda: LAYER(field(2, 3, 6, 16)), ValueError, r"modes\[0\] = 4 is too large for the grid "
      r"of \bx\b", "grid-too-small"),
    P(lambda: LAYER(field(2, 3, 16, 7)), ValueError, r"modes\[1\] = 5 is too large for the grid "
      r"of \bx\b", "grid-too-small-halved"),
    P(lambda: LAYER(with_value(XL, math.nan)), ValueError, r"\bx\b contains 1 non-finite", "nan"),
    P(lambda: LAYER(with_value(XL, math.inf)), ValueError, r"\bx\b contains 1 non-finite", "inf"),
    P(lambda: LAYER(XL, out_shape=(16,)), ValueError, r"out_shape must have 2 entries",
      "out-shape-length"),
    P(lambda: LAYER(XL, out_shape=(16, 6)), ValueError, r"modes\[1\] = 5 is too large for "
      r"out_shape", "out-shape-too-small"),
    P(lambda: LAYER(XL, out_shape=(16, True)), TypeError, r"out_shape\[1\] must be an int",
      "out-shape-bool"),
]


def calculus_cases(fn, name):
    U = field(2, 12, 10)
    return [
        P(lambda: fn(U.tolist()), TypeError, r"\bu\b must be a torch\.Tensor", f"{name}-list"),
        P(lambda: fn(U.to(torch.int32)), TypeError, r"\bu\b must be a real", f"{name}-int"),
        P(lambda: fn(U.to(torch.complex128)), TypeError, r"\bu\b must be a real",
          f"{name}-complex"),
        P(lambda: fn(field(12)), ValueError, r"\bu\b must have at least 2 grid axes",
          f"{name}-ndim"),
        P(lambda: fn(field(3, 1, 10)), ValueError, r"\bu\b grid axis 0 has 1 point",
          f"{name}-one-point"),
        P(lambda: fn(with_value(U, math.nan)), ValueError, r"\bu\b contains 1 non-finite",
          f"{name}-nan"),
        P(lambda: fn(with_value(U, -math.inf)), ValueError, r"\bu\b contains 1 non-finite",
          f"{name}-inf"),
        P(lambda: fn(U, (0.0, 1.0)), ValueError, r"lengths\[0\] must be finite and > 0",
          f"{name}-zero-length"),
        P(lambda: fn(U, (1.0, -3.0)), ValueError, r"lengths\[1\] must be finite and > 0",
          f"{name}-negative-length"),
        P(lambda: fn(U, (1.0, math.nan)), ValueError, r"lengths\[1\]", f"{name}-nan-length"),
        P(lambda: fn(U, (1.0, math.inf)), ValueError, r"lengths\[1\]", f"{name}-inf-length"),
        P(lambda: fn(U, (True, 1.0)), TypeError, r"lengths\[0\]", f"{name}-bool-length"),
        P(lambda: fn(U, 2.0), TypeError, r"\blengths\b", f"{name}-scalar-lengths"),
        P(lambda: fn(U, "ab"), TypeError, r"\blengths\b", f"{name}-str-lengths"),
        P(lambda: fn(U, ()), ValueError, r"\blengths\b", f"{name}-empty-lengths"),
    ]


CALCULUS = (
    calculus_cases(gradient, "gradient")
    + calculus_cases(laplacian, "laplacian")
    + calculus_cases(inverse_laplacian, "inverse_laplacian")
)

U = field(2, 12, 10)

DEALIAS = [
    P(lambda: dealias(U.tolist()), TypeError, r"\bu\b must be a torch\.Tensor", "list"),
    P(lambda: dealias(U.to(torch.complex64)), TypeError, r"\bu\b must be a real", "complex"),
    P(lambda: dealias(U, ndim=True), TypeError, r"ndim must be an int", "ndim-bool"),
    P(lambda: dealias(U, ndim=0), ValueError, r"ndim must be >= 1", "ndim-zero"),
    P(lambda: dealias(U, ndim=2.0), TypeError, r"ndim must be an int", "ndim-float"),
    P(lambda: dealias(U, ndim=4), ValueError, r"\bu\b must have at least 4 grid axes",
      "ndim-too-large"),
    P(lambda: dealias(with_value(U, math.nan)), ValueError, r"\bu\b contains", "nan"),
    P(lambda: dealias_mask((0, 4)), ValueError, r"shape\[0\] must be >= 1", "mask-zero"),
    P(lambda: dealias_mask((4, -1)), ValueError, r"shape\[1\] must be >= 1", "mask-negative"),
    P(lambda: dealias_mask((4.5, 4)), TypeError, r"shape\[0\] must be an int", "mask-float"),
    P(lambda: dealias_mask((True, 4)), TypeError, r"shape\[0\] must be an int", "mask-bool"),
    P(lambda: dealias_mask(()), ValueError, r"\bshape\b", "mask-empty"),
    P(lambda: dealias_mask(5), TypeError, r"\bshape\b", "mask-int"),
]

SOBOLEV = [
    P(lambda: sobolev_norm(U.tolist(), 1.0), TypeError, r"\bu\b must be a torch\.Tensor", "list"),
    P(lambda: sobolev_norm(U.to(torch.int64), 1.0), TypeError, r"\bu\b must be a real", "int"),
    P(lambda: sobolev_norm(U.to(torch.complex128), 1.0), TypeError, r"\bu\b must be a real",
      "complex"),
    P(lambda: sobolev_norm(with_value(U, math.nan), 1.0), ValueError, r"\bu\b contains", "nan"),
    P(lambda: sobolev_norm(field(10), 1.0), ValueError, r"\bu\b must have at least 2", "ndim"),
    P(lambda: sobolev_norm(U, math.nan), ValueError, r"\bs\b must be a finite", "s-nan"),
    P(lambda: sobolev_norm(U, math.inf), ValueError, r"\bs\b must be a finite", "s-inf"),
    P(lambda: sobolev_norm(U, True), (TypeError, ValueError), r"\bs\b must be", "s-bool"),
    P(lambda: sobolev_norm(U, "1"), (TypeError, ValueError), r"\bs\b must be", "s-str"),
    P(lambda: sobolev_norm(U, 1.0, alpha=-1.0), ValueError, r"alpha must be", "alpha-negative"),
    P(lambda: sobolev_norm(U, 1.0, alpha=math.nan), ValueError, r"alpha must be", "alpha-nan"),
    P(lambda: sobolev_norm(U, 1.0, alpha=True), (TypeError, ValueError), r"alpha must be",
      "alpha-bool"),
    P(lambda: sobolev_norm(U, 1.0, lengths=(2.0, 0.0)), ValueError, r"lengths\[1\]",
      "lengths-zero"),
    P(lambda: sobolev_norm(U, 1.0, lengths=(-2.0, 1.0)), ValueError, r"lengths\[0\]",
      "lengths-negative"),
    P(lambda: sobolev_norm(U, 1.0, dims=(1,)), ValueError, r"dims must name one axis",
      "dims-count"),
    P(lambda: sobolev_norm(U, 1.0, dims=(1, 5)), ValueError, r"\bdims\b", "dims-range"),
    P(lambda: sobolev_norm(U, 1.0, dims=(1, -4)), ValueError, r"\bdims\b", "dims-range-neg"),
    P(lambda: sobolev_norm(U, 1.0, dims=(1, 1)), ValueError, r"\bdims\b", "dims-repeated"),
    P(lambda: sobolev_norm(U, 1.0, dims=(1, -2)), ValueError, r"\bdims\b", "dims-aliased"),
    P(lambda: sobolev_norm(U, 1.0, dims=("a", 1)), ValueError, r"\bdims\b", "dims-str"),
]

WAVENUMBERS = [
    P(lambda: wavenumbers((8, 9), (2.0, -1.0)), ValueError, r"lengths\[1\]", "lengths-negative"),
    P(lambda: wavenumbers((8, 9), (2.0,)), ValueError, r"lengths must have 2 entries",
      "lengths-count"),
    P(lambda: wavenumbers((8, 9), 0.0), ValueError, r"lengths\[0\]", "lengths-scalar-zero"),
    P(lambda: wavenumbers((0, 9), (1.0, 1.0)), ValueError, r"\bshape\b", "shape-zero"),
    P(lambda: wavenumbers((4.5, 9), (1.0, 1.0)), TypeError, r"\bshape\b", "shape-float"),
    P(lambda: wavenumbers(8, (1.0,)), TypeError, r"\bshape\b", "shape-int"),
]

CHECK_MODES = [
    P(lambda: check_modes((9, 4), (16, 16)), ValueError, r"modes\[0\] = 9 is too large for grid",
      "full-axis"),
    P(lambda: check_modes((4, 10), (16, 16)), ValueError, r"modes\[1\] = 10 is too large",
      "halved-axis"),
    P(lambda: check_modes((9, 4), (16, 16), name="n_modes"), ValueError, r"n_modes\[0\] = 9",
      "custom-name"),
    P(lambda: check_modes(0, (16, 16)), ValueError, r"modes\[0\] must be >= 1", "zero"),
    P(lambda: check_modes(True, (16, 16)), TypeError, r"\bmodes\b", "bool"),
    P(lambda: check_modes(2.5, (16, 16)), TypeError, r"\bmodes\b", "float"),
    P(lambda: check_modes((4, 4, 4), (16, 16)), ValueError, r"modes must have 2 entries",
      "length"),
    P(lambda: check_modes(2, 16), TypeError, r"\bgrid\b", "grid-int"),
]

ALL = (
    [pytest.param(*p.values, id="rfftn-" + p.id) for p in RFFTN]
    + [pytest.param(*p.values, id="irfftn-" + p.id) for p in IRFFTN]
    + [pytest.param(*p.values, id="conv_init-" + p.id) for p in CONV_INIT]
    + [pytest.param(*p.values, id="conv_forward-" + p.id) for p in CONV_FORWARD]
    + CALCULUS
    + [pytest.param(*p.values, id="dealias-" + p.id) for p in DEALIAS]
    + [pytest.param(*p.values, id="sobolev-" + p.id) for p in SOBOLEV]
    + [pytest.param(*p.values, id="wavenumbers-" + p.id) for p in WAVENUMBERS]
    + [pytest.param(*p.values, id="check_modes-" + p.id) for p in CHECK_MODES]
)


@pytest.mark.parametrize("call,exc,match", ALL)
def test_invalid_input_raises_a_clear_error(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_valid_inputs_of_the_table_pass():
    """The fixtures of the table are themselves valid (so each case tests one defect)."""
    assert C.shape == (2, 8, 5)
    assert LAYER(XL).shape == (2, 2, 16, 16)
    assert irfftn_truncated(C, (16, 16)).shape == (2, 16, 16)
    for fn in (laplacian, inverse_laplacian, dealias):
        assert fn(U).shape == U.shape
    assert len(gradient(U)) == 2
    assert sobolev_norm(U, 1.0, dims=(1, 2)).shape == (2,)
    assert check_modes((8, 9), (16, 16)) == (8, 9)
    assert dealias_mask((4, 6)).shape == (4, 4)


# ---------------------------------------------------------------------------------------
# half precision: on the CPU torch.fft has no float16/bfloat16 kernels. Either the entry
# point computes a sensible answer, or it rejects the dtype with a clear TypeError or
# ValueError naming the argument (never torch's "Unsupported dtype Half").

HALF_CASES = [
    ("x", lambda t: rfftn_truncated(t, (4, 5), method="fft"), "rfftn-fft"),
    ("x", lambda t: rfftn_truncated(t, (4, 5), method="dft"), "rfftn-dft"),
    ("u", lambda t: gradient(t)[0], "gradient"),
    ("u", laplacian, "laplacian"),
    ("u", inverse_laplacian, "inverse_laplacian"),
    ("u", dealias, "dealias"),
    ("u", lambda t: sobolev_norm(t, 1.0), "sobolev_norm"),
]


@pytest.mark.parametrize("name,fn", [pytest.param(n, f, id=i) for n, f, i in HALF_CASES])
def test_half_precision_is_computed_or_clearly_rejected(name, fn):
    dtype = torch.float16  # (bfloat16 behaves the same way today)
    t = field(2, 16, 16, dtype=torch.float32)
    try:
        out = fn(t.to(dtype))
    except (TypeError, ValueError) as e:
        assert f"{name} " in str(e) or f"{name}." in str(e), str(e)
        return
    ref = fn(t.to(dtype).float())
    tol = TOL[torch.float16]
    scale = float(ref.abs().max())
    torch.testing.assert_close(out.to(ref.dtype), ref, rtol=tol, atol=tol * scale)


@pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental")
def test_half_precision_spectrum_is_computed_or_clearly_rejected():
    c = C.to(torch.complex32)
    try:
        out = irfftn_truncated(c, (16, 16))
    except (TypeError, ValueError) as e:
        assert "c " in str(e), str(e)
        return
    ref = irfftn_truncated(c.to(torch.complex64), (16, 16))
    tol = TOL[torch.float16]
    torch.testing.assert_close(out.float(), ref, rtol=tol, atol=tol * float(ref.abs().max()))


# ---------------------------------------------------------------------------------------
# generated invalid shapes and modes


@st.composite
def too_many_modes(draw):
    d = draw(st.integers(1, 3))
    grid = tuple(draw(st.integers(2, 12)) for _ in range(d))
    top = [n // 2 + 1 if i == d - 1 else n // 2 for i, n in enumerate(grid)]
    modes = [draw(st.integers(1, t)) for t in top]
    bad = draw(st.integers(0, d - 1))
    modes[bad] = top[bad] + draw(st.integers(1, 10))
    return grid, tuple(modes), bad


@settings(max_examples=30, deadline=None)
@given(case=too_many_modes(), method=st.sampled_from(["auto", "fft", "dft"]))
def test_generated_too_many_modes_rfftn(case, method):
    grid, modes, bad = case
    x = torch.zeros(1, *grid)
    # the first offending axis is reported (all others are valid by construction)
    with pytest.raises(ValueError, match=rf"modes\[{bad}\] = {modes[bad]} is too large"):
        rfftn_truncated(x, modes, method=method)


@settings(max_examples=30, deadline=None)
@given(case=too_many_modes(), cin=st.integers(1, 3))
def test_generated_too_many_modes_spectral_conv(case, cin):
    grid, modes, bad = case
    # built for a grid that is large enough, then fed a grid that is too small
    layer = SpectralConv(cin, 2, modes)
    with pytest.raises(ValueError, match=rf"modes\[{bad}\] = {modes[bad]} is too large.*\bx\b"):
        layer(torch.zeros(2, cin, *grid))
    with pytest.raises(ValueError, match=rf"modes\[{bad}\] = {modes[bad]} is too large.*out_shape"):
        SpectralConv(cin, 2, modes, out_shape=grid)


@settings(max_examples=30, deadline=None)
@given(case=too_many_modes())
def test_generated_spectrum_too_large_for_output_shape(case):
    grid, modes, bad = case
    d = len(grid)
    kept = tuple(m if i == d - 1 else 2 * m for i, m in enumerate(modes))
    c = torch.zeros(1, *kept, dtype=torch.complex64)
    with pytest.raises(ValueError, match=rf"modes implied by c\[{bad}\] = {modes[bad]}.*shape"):
        irfftn_truncated(c, grid)


@settings(max_examples=30, deadline=None)
@given(
    shape=st.lists(st.integers(-3, 12), min_size=1, max_size=3).filter(
        lambda s: any(n < 1 for n in s)
    )
)
def test_generated_nonpositive_grid_sizes(shape):
    bad = next(i for i, n in enumerate(shape) if n < 1)
    with pytest.raises(ValueError, match=rf"shape\[{bad}\] must be >= 1"):
        dealias_mask(tuple(shape))
    c = torch.zeros(1, *([2] * (len(shape) - 1)), 1, dtype=torch.complex64)
    with pytest.raises(ValueError, match=rf"shape\[{bad}\] must be >= 1"):
        irfftn_truncated(c, tuple(shape))


# ---------------------------------------------------------------------- shared scalar checks


def test_check_positive_and_tolerances_name_the_value_and_the_fix():
    import numpy as np

    from sciml._validation import check_int, check_positive, check_tolerances

    assert check_positive("reg", 1) == 1.0 and isinstance(check_positive("reg", 1), float)
    assert check_positive("shift", 0.0, allow_zero=True) == 0.0
    assert check_positive("reg", np.float32(0.5)) == 0.5
    for v, exc, words in ((0.0, ValueError, "reg must be finite and > 0, got 0.0; raise it"),
                          (-1, ValueError, "reg must be finite and > 0, got -1"),
                          (math.nan, ValueError, "reg must be finite and > 0, got nan"),
                          (math.inf, ValueError, "got inf"),
                          ("x", TypeError, "reg must be a number, got 'x' (str)"),
                          (True, TypeError, "reg must be a number, got True"),
                          (None, TypeError, "got None"),
                          (torch.ones(1), TypeError, "(Tensor)")):
        with pytest.raises(exc) as e:
            check_positive("reg", v, fix="raise it")
        assert words in str(e.value)
    with pytest.raises(ValueError, match=r"shift must be finite and >= 0, got -0\.5"):
        check_positive("shift", -0.5, allow_zero=True)
    assert check_tolerances(1e-5, 0) == (1e-5, 0.0)
    with pytest.raises(ValueError, match=r"atol must be finite and >= 0, got nan; e\.g\. 1e-8"):
        check_tolerances(1e-5, math.nan, fix="e.g. 1e-8")
    with pytest.raises(TypeError, match="rtol must be a number"):
        check_tolerances("1e-5", 0.0)
    with pytest.raises(ValueError, match="epochs must be >= 1, got 0; train for one at least"):
        check_int("epochs", 0, minimum=1, fix="train for one at least")
