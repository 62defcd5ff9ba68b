"""The Trainer and the Spectral-Refiner on a GPU (simulated without one), and mixed precision.

Host-sync budgets, counted with :class:`sciml.testing.SimCuda`: a Trainer step takes at most
one host synchronisation (the Trainer itself none: its losses are read back every
``log_every`` steps and at epoch ends) and no blocking host-to-device copy after the first;
a Spectral-Refiner step at most one. Then resume under simulated CUDA and across devices,
the ``amp`` option on the CPU (bf16 and fp16 lower the loss, the fp16 GradScaler resumes),
and a ``gpu``-marked smoke test that runs on a real GPU when there is one.
"""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from sciml.operators import SFNO, NSResidualLoss, RelativeLpLoss, SpectralRefiner
from sciml.pdes import NavierStokes2D, fno_forcing, gaussian_random_field
from sciml.testing.simcuda import active
from sciml.train import TrainConfig, Trainer, load_checkpoint


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 2, "lr": 1e-2, "batch_size": 2, "progress": False, **kw})


def _mlp(seed: int = 0) -> nn.Module:
    """A model without spectral layers: what the Trainer's own budget is measured on."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(5, 16), nn.GELU(), nn.Linear(16, 3))


def _regression(n: int = 12, seed: int = 0, scale: float = 1.0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(3, 5, generator=g)
    x = torch.randn(n, 5, generator=g)
    return TensorDataset(x, scale * torch.tanh(x @ A.T))


class _Marks:
    """A ``forward`` for the Trainer that notes the simulation's counts at every training
    call, so that the difference of two marks is one whole step (and the next batch)."""

    def __init__(self, sim) -> None:
        self.sim = sim
        self.marks: list[tuple[int, int, int]] = []

    def __call__(self, net, batch):
        if net.training:
            self.marks.append((self.sim.syncs, self.sim.h2d, len(self.sim.events)))
        x, y = batch
        return net(x), y

    def per_step(self) -> list[tuple[int, int]]:
        m = self.marks
        return [(b[0] - a[0], b[1] - a[1]) for a, b in pairwise(m)]

    def report(self, i: int) -> str:
        """The events of step ``i`` (for a failing assertion)."""
        events = self.sim.events[self.marks[i][2]:self.marks[i + 1][2]]
        return "\n".join(f"  {e.kind} {e.op} at {e.where}" for e in events)


def _check_budget(marks: _Marks, reads: set[int]) -> None:
    """<= 1 sync per step, exactly the reads of the losses (after the steps in ``reads``,
    1-based); no blocking copy after the first step."""
    for i, (syncs, h2d) in enumerate(marks.per_step()):
        step = i + 1
        want = 1 if step in reads else 0
        assert syncs <= 1 and syncs == want, (
            f"step {step}: {syncs} syncs, want {want}\n{marks.report(i)}")
        assert h2d == 0, f"step {step}: {h2d} blocking copies\n{marks.report(i)}"


# ----------------------------------------------------------------- host-sync budgets


def test_trainer_step_on_cuda_takes_no_sync_of_its_own(simcuda):
    """MLP, batches from a CPU dataset, progress bar on: the only syncs are the reads of
    the losses (every log_every = 4 steps and at the epoch end, step 6 of each epoch)."""
    data = _regression(12)  # 6 steps per epoch
    marks = _Marks(simcuda)
    t = Trainer(_mlp(), nn.functional.mse_loss, _cfg(log_every=4, progress=True),
                device="cuda", forward=marks)
    r = t.fit(data)
    assert r.global_step == 12 and len(marks.marks) == 12
    assert t.model[0].weight.is_cuda
    # reads after steps 4 and 6 (epoch end) and 8 (global step 8 = 4k); 12 is the last
    _check_budget(marks, reads={4, 6, 8})
    assert math.isfinite(r.history[-1]["train_loss"])


def test_sfno_trainer_step_on_cuda_takes_at_most_one_sync(simcuda):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(8, 5, 16, 16, generator=g),
                         torch.randn(8, 6, 16, 16, generator=g))
    marks = _Marks(simcuda)
    Trainer(SFNO(4, 3, 8, layers=4, out_steps=6), RelativeLpLoss(), _cfg(epochs=1),
            device="cuda", forward=marks).fit(data)
    per_step = marks.per_step()  # 3 steps, none of them a read of the losses
    assert len(per_step) == 3
    for i, (syncs, h2d) in enumerate(per_step):
        # the model may keep one boundary check of its input
        assert syncs <= 1, f"step {i + 1}: {syncs} syncs\n{marks.report(i)}"
        if i > 0:  # constants may be built on the device in the first step
            assert h2d == 0, f"step {i + 1}: {h2d} blocking copies\n{marks.report(i)}"


def _refiner_setup(n: int = 16, batch: int = 2):
    torch.manual_seed(0)
    model = SFNO(4, 3, 6, layers=2, out_steps=6).double()
    gen = torch.Generator().manual_seed(0)
    ns = NavierStokes2D(viscosity=1e-3, forcing=fno_forcing(n))
    frames = ns.solve(gaussian_random_field(batch, n, generator=gen), torch.linspace(0, 1, 6))
    return model, frames


class _MarkedResidual(NSResidualLoss):
    """The residual, noting the simulation's counts at each call (one call per step)."""

    marks: list[tuple[int, int, int]]

    def per_sample(self, pred):
        sim = active()
        self.marks.append((sim.syncs, sim.h2d, len(sim.events)))
        return super().per_sample(pred)


def _refine_on_cuda(sim, steps: int = 4) -> list[tuple[int, int]]:
    model, frames = _refiner_setup()
    res = _MarkedResidual(NavierStokes2D(viscosity=1e-3, forcing=fno_forcing(16).cuda()),
                          0.2, s=-1.0)
    res.marks = []
    r = SpectralRefiner(steps=steps, lr=1e-2, batch_size=2, progress=False)(
        model.cuda(), frames.cuda(), res)
    assert r.prediction.is_cuda and r.history.shape == (steps + 1, 2)
    m = res.marks
    return [(b[0] - a[0], b[1] - a[1]) for a, b in pairwise(m)]


def test_refiner_step_on_cuda_takes_at_most_one_sync(simcuda):
    per_step = _refine_on_cuda(simcuda)
    assert len(per_step) == 4
    assert all(syncs <= 1 for syncs, _ in per_step), per_step
    assert all(syncs == 0 for syncs, _ in per_step), per_step  # what it takes now


def test_refiner_step_on_cuda_copies_nothing_after_the_first(simcuda):
    per_step = _refine_on_cuda(simcuda)
    assert all(h2d == 0 for _, h2d in per_step[1:]), per_step


def test_refiner_reports_a_diverged_refinement():
    model, frames = _refiner_setup(batch=1)
    res = NSResidualLoss(NavierStokes2D(viscosity=1e-3, forcing=fno_forcing(16)), 0.2)
    with pytest.raises(FloatingPointError, match=r"diverged: the residual of trajectory 0 "
                                                 r"is (nan|inf).*lower the learning rate"):
        SpectralRefiner(steps=3, lr=1e200, batch_size=1, progress=False)(model, frames, res)
    bad = frames.clone()
    bad[0, 0, 0, 0] = math.nan
    with pytest.raises(ValueError, match="x contains 1 non-finite"):
        SpectralRefiner(steps=1, progress=False)(model, bad, res)


# -------------------------------------------------------------------------- resume


class _Killed(Exception):
    pass


def _killing(after: int):
    """A forward that raises before training step ``after + 1`` (a crash)."""
    calls = [0]

    def forward(net, batch):
        if net.training:
            calls[0] += 1
            if calls[0] > after:
                raise _Killed
        return net(batch[0]), batch[1]

    return forward


def _history(r) -> list[dict]:
    return [{k: v for k, v in h.items() if k != "elapsed"} for h in r.history]


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("first, second", [("cuda", "cuda"), ("cuda", "cpu"), ("cpu", "cuda")])
def test_resume_under_simulated_cuda_equals_the_uninterrupted_run(simcuda, tmp_path, first,
                                                                  second):
    """Killed after 7 steps (checkpoint at 6), resumed, on the same or the other device."""
    data = _regression(12)
    cfg = _cfg(epochs=3, checkpoint_every=2, log_every=3)
    ref = Trainer(_mlp(), nn.functional.mse_loss, cfg, device="cuda")
    ref_result = ref.fit(data, data)
    with pytest.raises(_Killed):
        Trainer(_mlp(), nn.functional.mse_loss, cfg, device=first, out_dir=tmp_path,
                forward=_killing(7)).fit(data, data)
    assert load_checkpoint(tmp_path / "checkpoint.pt")["progress"]["global_step"] == 6
    t = Trainer(_mlp(1), nn.functional.mse_loss, cfg, device=second, out_dir=tmp_path)
    r = t.fit(data, data, resume=True)
    assert t.model[0].weight.is_cuda == (second == "cuda")
    assert r.global_step == 18
    got, want = _state(t.model), _state(ref.model)
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert _history(r) == _history(ref_result)


# ----------------------------------------------------------------- mixed precision


def test_amp_setting_is_checked():
    assert TrainConfig(epochs=1, amp="off").amp is None
    assert TrainConfig(epochs=1).amp is None
    assert TrainConfig(epochs=1, amp="bf16").to_dict()["amp"] == "bf16"
    with pytest.raises(ValueError, match=r"amp must be None, 'off', 'bf16' or 'fp16', got "
                                         r"'fp32'"):
        TrainConfig(epochs=1, amp="fp32")
    with pytest.raises(TypeError, match=r"amp must be None or a str .* got True"):
        TrainConfig(epochs=1, amp=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="log_every must be >= 1, got 0"):
        TrainConfig(epochs=1, log_every=0)


@pytest.mark.parametrize("amp, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_amp_training_lowers_the_loss_under_autocast(amp, dtype):
    seen = []

    def forward(net, batch):
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        pred = net(batch[0])
        seen.append(pred.dtype)
        return pred, batch[1]

    t = Trainer(_mlp(), nn.functional.mse_loss, _cfg(epochs=6, batch_size=4, amp=amp),
                forward=forward)
    r = t.fit(_regression(32), _regression(32))
    assert (True, dtype) in seen and dtype in seen  # the forward ran under autocast
    losses = [h["train_loss"] for h in r.history]
    assert losses[-1] < 0.5 * losses[0], losses
    assert r.history[-1]["eval_loss"] < 0.5 * losses[0]
    assert t.model[0].weight.dtype == torch.float32  # the weights stay float32
    assert (t.scaler is not None) == (amp == "fp16")


def test_fp16_scaler_state_resumes(tmp_path):
    """Targets of size 1e4 overflow float16 gradients at the initial scale 2^16: the
    scaler halves its scale (skipping those steps); a resumed run restores it."""
    data = _regression(16, scale=1e4)
    cfg = _cfg(epochs=2, batch_size=2, checkpoint_every=3, amp="fp16")
    ref = Trainer(_mlp(), nn.functional.mse_loss, cfg)
    ref.fit(data)
    with pytest.raises(_Killed):
        Trainer(_mlp(), nn.functional.mse_loss, cfg, out_dir=tmp_path,
                forward=_killing(10)).fit(data)
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["progress"]["global_step"] == 9
    assert ckpt["scaler"]["scale"] < 2.0**16  # overflowed: a fresh scaler would differ
    t = Trainer(_mlp(1), nn.functional.mse_loss, cfg, out_dir=tmp_path)
    t.fit(data, resume=True)
    assert t.scaler.get_scale() == ref.scaler.get_scale()
    got, want = _state(t.model), _state(ref.model)
    assert all(torch.equal(got[k], want[k]) for k in want)
    # amp is a run setting: a resume with another one is refused
    with pytest.raises(ValueError, match="amp='fp16' but this run has amp='bf16'"):
        Trainer(_mlp(), nn.functional.mse_loss, _cfg(epochs=2, batch_size=2,
                                                     checkpoint_every=3, amp="bf16"),
                out_dir=tmp_path).fit(data, resume=True)


def test_non_finite_loss_is_found_at_the_next_read(tmp_path):
    x, y = _regression(8).tensors
    y = y.clone()
    y[3] = math.nan  # step 4 (batch 3 of epoch 0) with batches of 1, no shuffling
    t = Trainer(_mlp(), nn.functional.mse_loss, _cfg(batch_size=1, shuffle=False, log_every=3),
                out_dir=tmp_path)
    with pytest.raises(FloatingPointError, match=r"nan at step 4 \(epoch 0, batch 3\).*read "
                                                 r"back after step 6 \(every log_every=3"):
        t.fit(TensorDataset(x, y))
    assert not (tmp_path / "checkpoint.pt").exists()


# ------------------------------------------------------------ on a GPU (or simulated)


@pytest.mark.gpu
def test_gpu_smoke_trainer_resume_and_refiner(tmp_path):
    data = _regression(8)
    cfg = _cfg(epochs=2, checkpoint_every=2)
    ref = Trainer(_mlp(), nn.functional.mse_loss, cfg, device="cuda")
    ref.fit(data)
    with pytest.raises(_Killed):
        Trainer(_mlp(), nn.functional.mse_loss, cfg, device="cuda", out_dir=tmp_path,
                forward=_killing(5)).fit(data)
    t = Trainer(_mlp(), nn.functional.mse_loss, cfg, device="cuda", out_dir=tmp_path)
    r = t.fit(data, resume=True)
    assert r.global_step == 8 and t.model[0].weight.is_cuda
    got, want = _state(t.model), _state(ref.model)
    for k in want:  # a GPU may pick other kernels after the restart: rounding only
        torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-6)
    model, frames = _refiner_setup(batch=1)
    res = NSResidualLoss(NavierStokes2D(viscosity=1e-3, forcing=fno_forcing(16).cuda()), 0.2)
    out = SpectralRefiner(steps=2, lr=1e-3, batch_size=1, progress=False)(
        model.cuda(), frames.cuda(), res)
    assert out.prediction.is_cuda and torch.isfinite(out.history).all()
