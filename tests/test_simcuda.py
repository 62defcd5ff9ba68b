"""The simulated-CUDA mode: it must catch what a GPU would reject and count what stalls one.

A test mode that cannot fail is worse than none: each check here makes a known mistake and
asserts it is caught, and runs known-good code and asserts it is not.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sciml.testing import SimCuda, SimCudaError

ROOT = Path(__file__).resolve().parents[1]


def test_tensors_report_cuda_and_compute_on_the_cpu(simcuda):
    x = torch.arange(6.0).reshape(2, 3).cuda()
    assert x.device == torch.device("cuda", 0) and x.is_cuda and x.get_device() == 0
    y = (x * 2 + 1).T[1:]
    assert y.device.type == "cuda"  # results and views keep the device
    z = torch.zeros(3, device=x.device)
    assert z.device.type == "cuda"
    np.testing.assert_allclose(y.cpu().numpy(), (np.arange(6.0).reshape(2, 3) * 2 + 1).T[1:])
    assert y.cpu().device.type == "cpu"
    assert torch.cuda.is_available() and torch.cuda.device_count() == 1


def test_device_mixing_is_an_error(simcuda):
    x = torch.randn(4, 3, device="cuda")
    with pytest.raises(SimCudaError, match=r"mixes cuda tensors with CPU tensor"):
        x + torch.ones(4, 3)
    with pytest.raises(SimCudaError, match="mixes"):
        torch.ones(4, 3).add_(x)
    x + torch.tensor(2.0)  # a 0-dim CPU tensor is a scalar, as on a GPU
    with pytest.raises(SimCudaError, match="numpy"):
        x.numpy()
    with pytest.raises(SimCudaError, match="generator"):
        torch.randn(3, device="cuda", generator=torch.Generator())
    g = torch.Generator(device="cuda").manual_seed(0)
    assert g.device.type == "cuda" and torch.rand(2, device="cuda", generator=g).is_cuda


def test_mixing_inside_a_hand_written_backward_is_caught(simcuda):
    class Scale(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return 2 * x

        @staticmethod
        def backward(ctx, g):
            assert g.device.type == "cuda"  # the backward sees the simulated device
            return g * torch.full((3,), 2.0)  # built on the CPU: a GPU would fail here

    x = torch.randn(3, device="cuda", requires_grad=True)
    with pytest.raises(SimCudaError, match="mixes"):
        Scale.apply(x).sum().backward()


def test_syncs_and_blocking_copies_are_counted(simcuda):
    x = torch.randn(5, device="cuda")
    with simcuda.count() as c:
        float(x.sum())
        x.max().item()
        bool((x > 0).any())
        x[x > 0]
        x.tolist()
        x.cpu()
        torch.cuda.synchronize()
    assert c.syncs == 7, c.report()
    assert c.h2d == 0
    with simcuda.count() as c:
        torch.ones(3).cuda()
        torch.ones(3).to("cuda", non_blocking=True)  # not blocking: not counted
        torch.tensor([1.0, 2.0], device="cuda")
        x[torch.tensor([0, 2])]  # CPU indices are copied over
        x[:2].copy_(torch.ones(2))
    assert (c.h2d, c.syncs) == (4, 0), c.report()
    assert "test_simcuda.py" in c.report()  # each event names the caller's line
    with simcuda.count() as c:
        y = torch.zeros_like(x)
        for _ in range(10):
            y = torch.where(y > 1, y, y + x.abs())
    assert (c.syncs, c.h2d) == (0, 0), c.report()


def test_modules_optimisers_and_autocast(simcuda):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.GELU(), torch.nn.Linear(8, 1))
    ref = [p.detach().clone() for p in model.parameters()]
    model = model.to("cuda")
    assert all(p.is_cuda for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.randn(16, 3, device="cuda")
    with simcuda.count() as c:
        for _ in range(3):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    assert (c.syncs, c.h2d) == (0, 0), c.report()
    assert all(p.grad.is_cuda for p in model.parameters())
    assert any(not torch.equal(p.detach().cpu(), r) for p, r in zip(model.parameters(), ref))
    with torch.autocast("cuda", dtype=torch.bfloat16):  # runs as CPU autocast
        assert model(x).dtype == torch.bfloat16


def test_set_device_and_ordinals():
    with SimCuda(device_count=2):
        torch.cuda.set_device("cuda:1")
        assert torch.cuda.current_device() == 1
        with pytest.raises(ValueError, match="index"):
            torch.cuda.set_device("cuda")  # what torch itself raises without an index
        with pytest.raises(SimCudaError, match="invalid device ordinal"):
            torch.zeros(2, device="cuda:2")
    assert not isinstance(torch.Generator(), type(None))
    assert torch.cuda.is_available() == torch.cuda.is_available()  # restored, no error


def test_state_is_restored_on_exit():
    before = (torch.cuda.is_available, torch.Generator, torch.autocast)
    with SimCuda():
        x = torch.ones(2, device="cuda")
    assert (torch.cuda.is_available, torch.Generator, torch.autocast) == before
    assert x.device.type == "cpu"  # outside the mode the tensor is what it always was
    with pytest.raises(ValueError, match="device_count"):
        SimCuda(device_count=0)


def test_runner_runs_a_script_under_simulated_cuda(tmp_path):
    script = tmp_path / "s.py"
    script.write_text("import torch\nx = torch.ones(3, device='cuda')\n"
                      "assert x.device.type == 'cuda'\nprint(float(x.sum()))\n")
    out = subprocess.run([sys.executable, "-m", "sciml.testing", str(script)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "3.0"
    assert "1 host syncs" in out.stderr
