"""SpectralConv on the GPU against the CPU: forward, backward, and a float64 gradcheck on
the device (run for real on a CUDA machine, under simulated CUDA elsewhere)."""

from __future__ import annotations

import pytest
import torch
from conftest import GRADCHECK, assert_close_rel

from sciml.spectral import SpectralConv

CASES = [((12,), (4,), (16,)), ((8, 10), (3, 4), None), ((6, 8, 6), (2, 3, 2), (8, 8, 6))]


@pytest.mark.gpu
@pytest.mark.parametrize("method", ["fft", "dft"])
@pytest.mark.parametrize("grid, modes, out_shape", CASES, ids=["1d", "2d", "3d"])
def test_cuda_matches_cpu_forward_and_backward(method, grid, modes, out_shape):
    torch.manual_seed(0)
    cpu = SpectralConv(3, 2, modes, out_shape=out_shape, method=method, dtype=torch.float64)
    with torch.no_grad():
        cpu.bias.normal_()
    gpu = SpectralConv(3, 2, modes, out_shape=out_shape, method=method,
                       dtype=torch.float64).cuda()
    gpu.load_state_dict(cpu.state_dict())
    x = torch.randn(2, 3, *grid, dtype=torch.float64, requires_grad=True)
    xg = x.detach().cuda().requires_grad_()
    y, yg = cpu(x), gpu(xg)
    assert yg.is_cuda
    assert_close_rel(yg, y, torch.float64, factor=10)
    w = torch.randn_like(y)
    (y * w).sum().backward()
    (yg * w.cuda()).sum().backward()
    assert xg.grad.is_cuda and gpu.weight.grad.is_cuda
    assert_close_rel(xg.grad, x.grad, torch.float64, factor=10)
    assert_close_rel(gpu.weight.grad, cpu.weight.grad, torch.float64, factor=10)
    assert_close_rel(gpu.bias.grad, cpu.bias.grad, torch.float64, factor=10)


@pytest.mark.gpu
@pytest.mark.parametrize("method", ["fft", "dft"])
def test_gradcheck_on_the_device(method):
    torch.manual_seed(1)
    layer = SpectralConv(2, 2, (2, 3), out_shape=(6, 7), method=method,
                         dtype=torch.float64).cuda()
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64, device="cuda", requires_grad=True)
    w = layer.weight.detach().clone().requires_grad_()
    b = torch.randn(2, dtype=torch.float64, device="cuda", requires_grad=True)

    def f(x, w, b):
        return torch.func.functional_call(layer, {"weight": w, "bias": b}, (x,))

    assert torch.autograd.gradcheck(f, (x, w, b), **GRADCHECK)
