"""The Triton spectral convolution against the torch path, under the Triton interpreter.

Without a CUDA device ``TRITON_INTERPRET=1`` runs the kernels on CPU tensors (slowly), so
every size here is small. On a CUDA machine the variable is left alone, so the same
file checks the compiled kernels on the GPU (set ``TRITON_INTERPRET=1`` to force the
interpreter there too).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

if not torch.cuda.is_available():  # `import torch` does not import triton
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported anywhere

from conftest import assert_close_rel

pytest.importorskip("triton")

from sciml.spectral import SpectralConv
from sciml.spectral import _triton as st

DEVICE = "cpu" if os.environ.get("TRITON_INTERPRET", "0") == "1" else "cuda"
if DEVICE == "cuda" and not torch.cuda.is_available():
    pytest.skip("TRITON_INTERPRET=0 and no CUDA device", allow_module_level=True)

# (modes, input grid, output grid, bias): 1D/2D/3D, odd sizes, resampled outputs, the
# Nyquist bin kept on the halved axis (modes n // 2 + 1) and whole full axes (n // 2)
CASES = [
    ((7,), (12,), (15,), True),
    ((5,), (15,), (15,), False),
    ((4, 5), (8, 9), (10, 8), True),
    ((3, 6), (11, 16), (11, 16), False),
    ((2, 3, 2), (8, 7, 6), (6, 9, 5), True),
    ((3, 2, 5), (6, 6, 8), (6, 6, 8), False),
]
CIN, COUT, BATCH = 3, 4, 2


def _layer(modes, out_shape, bias: bool, seed: int, cin: int = CIN, cout: int = COUT
           ) -> SpectralConv:
    gen = torch.Generator().manual_seed(seed)
    layer = SpectralConv(cin, cout, modes, out_shape=out_shape, bias=bias, method="fft")
    with torch.no_grad():  # random weights and a nonzero bias (the default bias is zero)
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen))
        if layer.bias is not None:
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=gen))
    return layer


def _params(layer: SpectralConv):
    """The layer's parameters as fresh leaves on DEVICE (float32)."""
    w = layer.weight.detach().to(DEVICE).requires_grad_()
    b = None if layer.bias is None else layer.bias.detach().to(DEVICE).requires_grad_()
    return w, b


def _check_against_fft(modes, grid, out_shape, bias, batch=BATCH, cin=CIN, cout=COUT):
    """Forward and all three gradients against the float64 torch FFT path."""
    seed = len(grid) + 10 * modes[0]
    layer = _layer(modes, out_shape, bias, seed, cin, cout)
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(batch, cin, *grid, generator=gen)
    g = torch.randn(batch, cout, *out_shape, generator=gen)

    ref_layer = _layer(modes, out_shape, bias, seed, cin, cout).double()  # same weights
    x64 = x.double().requires_grad_()
    ref = ref_layer(x64)
    (ref * g.double()).sum().backward()

    w, b = _params(layer)
    xt = x.to(DEVICE).requires_grad_()
    out = st.spectral_conv_triton(xt, w, b, modes, out_shape)
    assert out.shape == (batch, cout, *out_shape) and out.dtype == torch.float32
    assert_close_rel(out, ref, torch.float32, msg="forward")
    (out * g.to(DEVICE)).sum().backward()
    assert_close_rel(xt.grad, x64.grad, torch.float32, msg="grad x")
    assert_close_rel(w.grad, ref_layer.weight.grad, torch.float32, msg="grad weight")
    if bias:
        assert_close_rel(b.grad, ref_layer.bias.grad, torch.float32, msg="grad bias")


@pytest.mark.parametrize("modes, grid, out_shape, bias", CASES)
def test_forward_and_gradients_match_the_fft_path(modes, grid, out_shape, bias):
    _check_against_fft(modes, grid, out_shape, bias)


def test_several_tiles_per_dimension():
    """Sizes past one tile everywhere: rows, modes (> 64), the j loop, channels (> 64)."""
    _check_against_fft((66,), (131,), (140,), True, batch=3, cin=33, cout=65)
    _check_against_fft((3,), (8,), (8,), True, batch=33, cin=2, cout=3)  # batch tiles


def test_bfloat16_input():
    modes, grid, out_shape = (3, 4), (8, 9), (10, 8)
    layer = _layer(modes, out_shape, True, seed=3)
    x = torch.randn(BATCH, CIN, *grid, generator=torch.Generator().manual_seed(1))
    xb = x.to(DEVICE, torch.bfloat16).requires_grad_()
    w, b = _params(layer)
    out = st.spectral_conv_triton(xb, w, b, modes, out_shape)
    assert out.dtype == torch.bfloat16
    ref = layer(xb.detach().float().cpu())  # the same bf16 values, in float32
    scale = ref.abs().max().item()
    torch.testing.assert_close(out.float().cpu(), ref, rtol=0, atol=1e-2 * scale)
    out.float().sum().backward()
    assert xb.grad.dtype == torch.bfloat16 and w.grad.dtype == torch.float32
    assert torch.isfinite(xb.grad.float()).all()


def test_partial_gradients_and_strided_input():
    modes, grid, out_shape = (2, 3), (7, 8), (7, 8)
    layer = _layer(modes, out_shape, True, seed=5)
    base = torch.randn(BATCH, CIN, grid[1], grid[0], generator=torch.Generator().manual_seed(2))
    x = base.transpose(-1, -2)  # not contiguous
    ref = layer(x)
    ref.square().sum().backward()
    w = layer.weight.detach().to(DEVICE).requires_grad_()
    out = st.spectral_conv_triton(x.to(DEVICE), w, layer.bias.detach().to(DEVICE), modes,
                                  out_shape)
    assert_close_rel(out, ref.detach(), torch.float32, factor=10)
    out.square().sum().backward()  # only the weight asks for a gradient
    assert_close_rel(w.grad, layer.weight.grad, torch.float32, factor=10)


@pytest.mark.parametrize("wants", ["x", "bias"])
def test_one_gradient_at_a_time(wants):
    modes, grid = (3,), (9,)
    layer = _layer(modes, grid, True, seed=4)
    x = torch.randn(BATCH, CIN, *grid, generator=torch.Generator().manual_seed(3))
    xr = x.clone().requires_grad_()
    layer(xr).square().sum().backward()
    w, b = (t.detach().to(DEVICE) for t in (layer.weight, layer.bias))
    xt = x.to(DEVICE)
    leaf = {"x": xt, "bias": b}[wants].requires_grad_()
    st.spectral_conv_triton(xt, w, b, modes, grid).square().sum().backward()
    expected = {"x": xr.grad, "bias": layer.bias.grad}[wants]
    assert_close_rel(leaf.grad, expected, torch.float32, factor=10)
    assert w.grad is None


def test_launch_counts(monkeypatch):
    """2d + 1 launches forward and backward (d grid axes)."""
    counts: dict[str, int] = {}
    kernels = dict(st._kernels())

    class Counted:
        def __init__(self, name, kernel):
            self.name, self.kernel = name, kernel

        def __getitem__(self, grid):
            counts[self.name] = counts.get(self.name, 0) + 1
            return self.kernel[grid]

    monkeypatch.setattr(st, "_KERNELS", {k: Counted(k, v) for k, v in kernels.items()})
    modes, grid = (2, 2, 2), (5, 5, 4)
    layer = _layer(modes, grid, True, seed=1)
    w, b = _params(layer)
    x = torch.randn(1, CIN, *grid, device=DEVICE, requires_grad=True)
    out = st.spectral_conv_triton(x, w, b, modes, grid)
    assert counts == {"axis": 6, "mix": 1}
    counts.clear()
    out.sum().backward()
    assert counts == {"axis": 6, "mix_backward": 1}


def test_empty_batch():
    layer = _layer((3,), (8,), True, seed=0)
    w, b = _params(layer)
    x = torch.zeros(0, CIN, 8, device=DEVICE, requires_grad=True)
    out = st.spectral_conv_triton(x, w, b, (3,), (10,))
    assert out.shape == (0, COUT, 10)
    out.sum().backward()
    assert x.grad.shape == x.shape and not w.grad.any()


def test_bad_arguments(monkeypatch):
    layer = _layer((3, 2), (8, 8), True, seed=0)
    w, b = _params(layer)
    x = torch.randn(BATCH, CIN, 8, 8, device=DEVICE)
    with pytest.raises(TypeError, match=r"float64.*x\.float\(\)"):
        st.spectral_conv_triton(x.double(), w, b, (3, 2), (8, 8))
    with pytest.raises(TypeError, match="int64"):
        st.spectral_conv_triton(x.long(), w, b, (3, 2), (8, 8))
    with pytest.raises(TypeError, match=r"weight\.float\(\)"):
        st.spectral_conv_triton(x, w.double(), b, (3, 2), (8, 8))
    with pytest.raises(ValueError, match=r"= \(6, 2, 3, out_channels, 2\)"):
        st.spectral_conv_triton(x, w[:, :1], b, (3, 2), (8, 8))
    with pytest.raises(ValueError, match=r"bias must be a float32 tensor of shape \(4,\)"):
        st.spectral_conv_triton(x, w, b[:3], (3, 2), (8, 8))
    with pytest.raises(ValueError, match=r"x must have shape \(batch, channels, n1, n2\)"):
        st.spectral_conv_triton(x[0], w, b, (3, 2), (8, 8))
    with pytest.raises(ValueError, match="too large for out_shape"):
        st.spectral_conv_triton(x, w, b, (3, 2), (4, 8))
    with pytest.raises(ValueError, match="1 to 3 grid axes"):
        st.spectral_conv_triton(x, w, b, (1, 1, 1, 1), (8, 8, 8, 8))
    if DEVICE == "cpu":
        monkeypatch.setenv("TRITON_INTERPRET", "0")
        with pytest.raises(ValueError, match=r"need a CUDA tensor.*TRITON_INTERPRET=1"):
            st.spectral_conv_triton(x, w, b, (3, 2), (8, 8))


def test_missing_triton_is_named(monkeypatch):
    monkeypatch.setattr(st, "_KERNELS", None)
    monkeypatch.setitem(sys.modules, "triton", None)  # makes `import triton` fail
    assert not st.available()
    with pytest.raises(ImportError, match="pip install triton"):
        st._kernels()


def test_available_and_lazy_import():
    assert st.available()
    code = "import sys, sciml, sciml.spectral._triton; assert 'triton' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


_COMPILE_SCRIPT = """
import os, sys
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from sciml.spectral import _triton as st

kernels = st._kernels()
p = st.DOT_PRECISION
tiles = dict(BR=st._ROWS, BK=st._COLS, BJ=st._INNER, PREC=p)
mix = dict(BM=st._MIX_ROWS, BN=st._MIX_COLS, BT=st._INNER, PREC=p)
mixb = dict(BM1=st._MIX_ROWS, BN1=st._MIX_COLS, BT1=st._INNER, BM2=st._MIX_ROWS,
            BN2=st._MIX_COLS, BT2=st._INNER, PREC=p)
variants = [
    ("axis", dict(x_ptr="*bf16", y_ptr="*fp32"), dict(X_COMPLEX=False, Y_COMPLEX=True, **tiles)),
    ("axis", dict(), dict(X_COMPLEX=True, Y_COMPLEX=True, **tiles)),
    ("axis", dict(y_ptr="*bf16"), dict(X_COMPLEX=True, Y_COMPLEX=False, **tiles)),
    ("mix", dict(), dict(HAS_BIAS=True, **mix)),
    ("mix_backward", dict(), dict(BIAS_GRAD=True, **mixb)),
]
for cap in (80, 90):
    for name, ptrs, consts in variants:
        fn = kernels[name]
        sig = {}
        for a in fn.arg_names:
            if a in consts:
                sig[a] = "constexpr"
            elif a.endswith("_ptr"):
                sig[a] = ptrs.get(a, "*fp32")
            else:
                sig[a] = "i32"
        try:
            src = ASTSource(fn=fn, signature=sig, constexprs=consts)
        except (TypeError, KeyError, AssertionError) as err:
            print("API-SKIP", repr(err))
            sys.exit(0)
        k = triton.compile(src, target=GPUTarget("cuda", cap, 32),
                           options={"num_warps": st._WARPS})
        ptx = k.asm["ptx"]
        assert "mma" in ptx, (cap, name, "no tensor-core instruction in the PTX")
        print("compiled", cap, name, "wgmma" if "wgmma" in ptx else "mma.sync")
print("ALL-COMPILED")
"""


def test_kernels_compile_for_ampere_and_hopper(tmp_path):
    """The compiled (not interpreted) kernels build for sm_80 and sm_90 without a GPU.

    The interpreter checks the arithmetic; this checks what it cannot: that Triton lowers
    every kernel variant the launchers use to PTX with tensor-core products and that
    ptxas accepts it.
    """
    import importlib.util

    if importlib.util.find_spec("triton.backends.nvidia") is None:
        pytest.skip("this triton has no NVIDIA backend")
    env = dict(os.environ, TRITON_INTERPRET="0", TRITON_CACHE_DIR=str(tmp_path),
               TRITON_DEFAULT_FP_FUSION="1")
    run = subprocess.run([sys.executable, "-c", _COMPILE_SCRIPT], env=env,
                         capture_output=True, text=True, timeout=300)
    if "API-SKIP" in run.stdout:
        pytest.skip(f"triton.compile API of this version differs: {run.stdout.strip()}")
    assert run.returncode == 0 and "ALL-COMPILED" in run.stdout, run.stdout + run.stderr
