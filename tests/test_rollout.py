"""Rollout, accumulated MSE and pushforward windows, checked with an exact stepper."""

from __future__ import annotations

import pytest
import torch

from sciml.operators import BundledFNO
from sciml.train.rollout import Pushforward, accumulated_mse, rollout

L, NX, NT, K, DT, C = 16.0, 32, 60, 5, 0.05, 0.7


def exact(t: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """u(t, x) = sin(2 pi (x - c t) / L) * (1 + theta): (B, len(t), NX)."""
    x = (torch.arange(NX, dtype=torch.float64) + 0.5) * L / NX
    return torch.sin(2 * torch.pi * (x[None, None] - C * t[..., None]) / L) * \
        (1 + theta[:, :1, None])


class Exact(torch.nn.Module):
    """Returns the exact next window from the time of the last input step, and checks
    that the input window is the exact solution too (so misaligned windows fail)."""

    time_window, dt, n_params = K, DT, 1

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))
        self.checked = 0

    def forward(self, u, t, theta):
        past = t[:, None] - DT * torch.arange(K - 1, -1, -1, dtype=t.dtype)[None]
        torch.testing.assert_close(u, exact(past, theta), rtol=0, atol=1e-12)
        self.checked += 1
        fut = t[:, None] + DT * torch.arange(1, K + 1, dtype=t.dtype)[None]
        return exact(fut, theta) + 0 * self.w


def trajectories(B: int = 6):
    theta = torch.rand(B, 1, dtype=torch.float64)
    t = DT * torch.arange(NT, dtype=torch.float64).expand(B, NT)
    return exact(t, theta), theta


def test_rollout_of_an_exact_stepper_is_exact() -> None:
    u, theta = trajectories()
    m = Exact()
    pred = rollout(m, u[:, K:2 * K], torch.full((6,), (2 * K - 1) * DT,
                                                dtype=torch.float64), theta, NT - 2 * K).detach()
    assert pred.shape == (6, NT - 2 * K, NX)
    torch.testing.assert_close(pred, u[:, 2 * K:], rtol=0, atol=1e-12)
    assert float(accumulated_mse(pred, u[:, 2 * K:])) < 1e-20
    assert m.checked == -(-(NT - 2 * K) // K)


def test_accumulated_mse_is_the_sum_over_time_of_the_mean_square() -> None:
    a, b = torch.randn(3, 7, 5), torch.randn(3, 7, 5)
    ref = sum(float(((a[:, k] - b[:, k]) ** 2).mean()) for k in range(7))
    assert float(accumulated_mse(a, b)) == pytest.approx(ref, rel=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        accumulated_mse(a, b[:, :3])


@pytest.mark.parametrize("unroll", [0, 1, 3])
def test_pushforward_windows_line_up(unroll) -> None:
    """With an exact model every drawn window (after any unrolls) matches its target."""
    u, theta = trajectories()
    m = Exact().train()
    pf = Pushforward(max_unroll=unroll)
    torch.manual_seed(0)
    for _ in range(20):
        pred, target = pf.forward(m, (u, theta))
        assert pred.shape == target.shape == (6, K, NX)
        assert float(pf.loss(pred, target).detach()) < 1e-20
    m.eval()
    pred, target = pf.forward(m, (u, theta))
    assert float(pf.loss(pred, target).detach()) < 1e-20


def test_pushforward_grows_the_unrolls_with_the_step() -> None:
    class T:
        global_step = 0

    pf = Pushforward(max_unroll=3, grow_every=10, trainer=T())
    seen = []
    for step in (0, 9, 10, 25, 1000):
        T.global_step = step
        seen.append(pf.allowed_unroll())
    assert seen == [0, 0, 1, 2, 3]
    # a growing schedule without its trainer is refused, not silently run at max_unroll
    with pytest.raises(ValueError, match=r"push\.trainer = trainer"):
        Pushforward(max_unroll=3, grow_every=10).allowed_unroll()
    assert Pushforward(max_unroll=3).allowed_unroll() == 3
    with pytest.raises(ValueError, match="loss_kind"):
        Pushforward(loss_kind="l1")
    with pytest.raises(ValueError, match="max_unroll"):
        Pushforward(max_unroll=-1)


def test_bundled_fno_first_step_and_gradients() -> None:
    torch.manual_seed(0)
    m = BundledFNO(K, dt=DT, n_params=1, width=8, modes=4, layers=2).double()
    u, theta = trajectories(3)
    t = torch.full((3,), (K - 1) * DT, dtype=torch.float64)
    out = m(u[:, :K], t, theta)
    assert out.shape == (3, K, NX)
    # temporal bundling (the paper's eq. 10): out_k = u_last + k dt d_k
    d = m.fno(torch.cat([u[:, :K], torch.cat([t[:, None] / m.tmax, theta], 1)[:, :, None]
                         .expand(3, 2, NX)], 1))
    k = torch.arange(1, K + 1, dtype=torch.float64)[None, :, None]
    torch.testing.assert_close(out, u[:, K - 1:K] + k * DT * d)
    out.square().mean().backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in m.parameters())
    with pytest.raises(ValueError, match="time_window"):
        m(u[:, :K - 1], t, theta)
    with pytest.raises(ValueError, match="theta"):
        m(u[:, :K], t, torch.zeros(3, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="dt"):
        BundledFNO(K, dt=-1.0)
    assert BundledFNO(**m.config()).config() == m.config()
