"""SpectralConv, FNO and SFNO under ``torch.autocast`` (bf16 and fp16).

The spectral layer casts a half-precision input up to its float32 weights, switches
autocast off for the transforms and the mode mixing (both passes) and returns float32;
the pointwise layers around it run in half precision. Stated tolerances, relative L2
error against the float32 run, in units of the half type's unit roundoff ``u``
(bf16 ``2^-8``, fp16 ``2^-11``):

* SpectralConv alone: ``2 u`` (only the input's rounding to half precision is lost; on
  the same rounded input it equals the float32 layer to float32 rounding);
* FNO / SFNO (4 blocks, half-precision lifting, MLPs and projection): ``16 u``
  (observed up to about 6 u for bf16 and 10 u for fp16 over ten seeds).
"""

from __future__ import annotations

import pytest
import torch
from conftest import assert_close_rel

from sciml.operators import FNO, SFNO
from sciml.spectral import SpectralConv, _calibration, irfftn_truncated, rfftn_truncated

HALF = [torch.bfloat16, torch.float16]
U = {torch.bfloat16: 2.0**-8, torch.float16: 2.0**-11}


@pytest.fixture(autouse=True)
def _builtin_calibration(monkeypatch):
    monkeypatch.setenv(_calibration.ENV, "off")
    _calibration.reset()


def _cpu_autocast(dtype):
    try:
        with torch.autocast("cpu", dtype=dtype):
            ok = (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == dtype
    except (RuntimeError, ValueError):
        ok = False
    if not ok:
        pytest.skip(f"CPU autocast does not run {dtype} in this torch")
    return torch.autocast("cpu", dtype=dtype)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("method", ["fft", "dft"])
@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_spectral_conv_takes_half_precision_under_autocast(dtype, method, close):
    torch.manual_seed(0)
    layer = SpectralConv(3, 4, (4, 3), out_shape=(16, 14), method=method)
    with torch.no_grad():
        layer.bias.normal_()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 16, 12, generator=gen)
    w = torch.randn(2, 4, 16, 14, generator=gen)
    ref = layer(x)
    (ref * w).sum().backward()
    ref_grads = {n: p.grad.clone() for n, p in layer.named_parameters()}
    layer.zero_grad()

    xh = x.to(dtype).requires_grad_()  # what a pointwise layer hands over under autocast
    with _cpu_autocast(dtype):
        y = layer(xh)
    assert y.dtype == torch.float32
    # the spectral work is float32: on the same rounded input it is the float32 layer
    close(y, layer(xh.detach().float()), torch.float32)
    assert _rel(y, ref) <= 2 * U[dtype]
    (y * w).sum().backward()
    assert xh.grad.dtype == dtype and torch.isfinite(xh.grad).all()
    for name, p in layer.named_parameters():
        assert p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all(), name
        assert _rel(p.grad, ref_grads[name]) <= 4 * U[dtype], name


@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_autocast_does_not_reach_the_transforms_or_the_mixing(dtype):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 12, 10, generator=gen)
    layer = SpectralConv(3, 3, (4, 4), method="dft")
    plain = [rfftn_truncated(x, (4, 4), method=m) for m in ("fft", "dft")]
    plain += [irfftn_truncated(plain[1], (12, 10), method="dft"), layer(x)]
    with _cpu_autocast(dtype):
        auto = [rfftn_truncated(x, (4, 4), method=m) for m in ("fft", "dft")]
        auto += [irfftn_truncated(auto[1], (12, 10), method="dft"), layer(x)]
    for a, p in zip(auto, plain):
        assert a.dtype == p.dtype and torch.equal(a, p)


def _fno():
    gen = torch.Generator().manual_seed(3)
    return FNO(2, 1, 8, (4, 4), layers=4), torch.randn(2, 2, 16, 16, generator=gen), 0


def _sfno(out_steps):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 6, 16, 16, generator=gen)
    # the SFNO adds its prediction to the last frame: measure the error on the increment
    return SFNO(4, 3, 8, layers=4, out_steps=out_steps), x, x[:, -1:]


@pytest.mark.parametrize("make", [_fno, lambda: _sfno(None), lambda: _sfno(5)],
                         ids=["fno", "sfno", "sfno-out-steps"])
@pytest.mark.parametrize("dtype", HALF, ids=str)
def test_fno_and_sfno_train_under_autocast(dtype, make):
    torch.manual_seed(0)
    model, x, base = make()
    ref = model(x)
    ref.square().mean().backward()
    ref_grad = torch.cat([p.grad.flatten() for p in model.parameters()])
    model.zero_grad()

    with _cpu_autocast(dtype):
        y = model(x)
    assert y.shape == ref.shape and y.dtype in (dtype, torch.float32)
    assert _rel(y.float() - base, ref - base) <= 16 * U[dtype]
    y.float().square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    grad = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert torch.nn.functional.cosine_similarity(grad, ref_grad, dim=0) > 0.99


def test_half_precision_outside_autocast_is_refused():
    layer = SpectralConv(2, 2, (3,))
    with pytest.raises(TypeError, match="autocast"):
        layer(torch.randn(1, 2, 8, dtype=torch.bfloat16))
    with pytest.raises(TypeError, match="weights are"):
        FNO(1, 1, 4, (3,))(torch.randn(1, 1, 8, dtype=torch.float16))


def test_autocast_on_simulated_cuda_keeps_the_sync_budget(simcuda):
    torch.manual_seed(0)
    cpu = FNO(2, 1, 8, (4, 4), layers=4)
    model = FNO(2, 1, 8, (4, 4), layers=4).cuda()
    model.load_state_dict(cpu.state_dict())
    x = torch.randn(2, 2, 16, 16, generator=torch.Generator().manual_seed(3))
    xg = x.cuda()
    for _ in range(2):  # the first call builds the device constants
        with simcuda.count() as fwd, torch.autocast("cuda", dtype=torch.bfloat16):
            y = model(xg)
        with simcuda.count() as bwd:
            y.float().square().mean().backward()
    assert y.is_cuda and y.dtype == torch.bfloat16
    assert (fwd.syncs, fwd.h2d) == (1, 0), fwd.report()
    assert (bwd.syncs, bwd.h2d) == (0, 0), bwd.report()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        yc = cpu(x)
    assert_close_rel(y.float(), yc.float(), torch.float32, factor=1e3)
