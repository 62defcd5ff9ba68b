"""Tests of sciml.train: convergence, schedules, stopping, checkpoints, resume, torchrun."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import _train_script as script
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from sciml.train import TrainConfig, Trainer, TrainResult, load_checkpoint, load_model_state
from sciml.train._distributed import epoch_order, shard_batches, steps_per_epoch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).with_name("_train_script.py")


def _regression(n: int = 32, seed: int = 0) -> tuple[torch.Tensor, TensorDataset]:
    """y = A x with a known A (3 x 5)."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(3, 5, generator=g)
    x = torch.randn(n, 5, generator=g)
    return A, TensorDataset(x, x @ A.T)


def _linear() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Linear(5, 3, bias=False)


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 2, "lr": 1e-2, "progress": False, **kw})


def _state_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _files(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


def _run(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**os.environ, **(env or {})},
    )


# ------------------------------------------------------------------------ training


def test_linear_model_recovers_A(tmp_path):
    """Adam with the one-cycle schedule fits y = A x; the learned weight is A."""
    A, data = _regression(64)
    data = TensorDataset(*(t.double() for t in data.tensors))
    model = _linear().double()
    trainer = Trainer(model, nn.functional.mse_loss, _cfg(epochs=30, lr=0.1, batch_size=8),
                      out_dir=tmp_path)
    result = trainer.fit(data, data)
    assert isinstance(result, TrainResult)
    assert result.stopped == "epochs" and result.global_step == 30 * 8 == trainer.global_step
    assert result.epochs_done == 30.0
    losses = [r["train_loss"] for r in result.history]
    assert len(losses) == 30
    assert losses[-1] < 1e-8 * losses[0]
    assert result.history[-1]["eval_loss"] < 1e-8
    assert torch.allclose(trainer.model.weight.detach(), A.double(), rtol=0, atol=2e-4)
    # the metrics file holds the same records, one per line
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == result.history
    assert trainer.model is model


def test_fit_does_not_use_the_global_rng():
    _, data = _regression(20)
    state = torch.get_rng_state()
    Trainer(_linear(), nn.functional.mse_loss, _cfg(batch_size=3)).fit(data, data)
    assert torch.equal(torch.get_rng_state(), state)


def test_epoch_order_is_seeded_by_seed_and_epoch():
    a, b = epoch_order(50, 0, seed=1, shuffle=True), epoch_order(50, 0, seed=1, shuffle=True)
    assert torch.equal(a, b) and sorted(a.tolist()) == list(range(50))
    assert not torch.equal(a, epoch_order(50, 1, seed=1, shuffle=True))
    assert not torch.equal(a, epoch_order(50, 0, seed=2, shuffle=True))
    assert torch.equal(epoch_order(5, 3, seed=1, shuffle=False), torch.arange(5))


@pytest.mark.parametrize("n", [16, 13, 1])
def test_shards_are_the_single_process_batches(n):
    """Rank r's batch k is elements r::W of the single-process batch k of size W*b."""
    perm, b, W = torch.randperm(n), 2, 2
    single = [perm[i:i + W * b].tolist() for i in range(0, n, W * b)]
    shards = [shard_batches(perm, b, r, W) for r in range(W)]
    assert all(len(s) == steps_per_epoch(n, b, W) for s in shards)
    if n % W == 0:
        for k, batch in enumerate(single):
            for r in range(W):
                assert shards[r][k] == batch[r::W]
    else:  # padded by wrapping: every sample is seen, each rank has as many batches
        seen = [i for s in shards for batch in s for i in batch]
        assert set(seen) == set(range(n)) and len(seen) == n + (-n) % W


# ---------------------------------------------------------------------- schedules


def _lr_trace(schedule: str, steps: int, max_steps: int | None = None) -> list[float]:
    """The learning rate of every optimiser step, read by a forward hook."""
    _, data = _regression(steps * 2)
    lrs: list[float] = []
    holder: dict[str, Trainer] = {}

    def forward(model, batch):
        lrs.append(holder["t"].optimizer.param_groups[0]["lr"])
        return model(batch[0]), batch[1]

    holder["t"] = Trainer(_linear(), nn.functional.mse_loss,
                          _cfg(epochs=1, lr=0.1, batch_size=2, schedule=schedule,
                               max_steps=max_steps), forward=forward)
    holder["t"].fit(data)
    return lrs


@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "constant"])
def test_schedule_matches_torch(schedule):
    steps, max_steps = 30, 20  # the schedule spans max_steps, not the epoch
    lrs = _lr_trace(schedule, steps, max_steps)
    assert len(lrs) == max_steps
    ref_opt = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=0.1)
    if schedule == "onecycle":
        ref = torch.optim.lr_scheduler.OneCycleLR(ref_opt, max_lr=0.1, total_steps=max_steps)
    elif schedule == "cosine":
        ref = torch.optim.lr_scheduler.CosineAnnealingLR(ref_opt, T_max=max_steps)
    else:
        ref = None
    expected = []
    for _ in range(max_steps):
        expected.append(ref_opt.param_groups[0]["lr"])
        ref_opt.step()
        if ref is not None:
            ref.step()
    assert lrs == pytest.approx(expected, rel=1e-12, abs=0)
    # and the closed forms
    if schedule == "onecycle":
        assert lrs[0] == pytest.approx(0.1 / 25) and max(lrs) == pytest.approx(0.1)
        assert lrs[-1] == pytest.approx(0.1 / 25 / 1e4)
    elif schedule == "cosine":
        for k in (0, 5, 19):
            assert lrs[k] == pytest.approx(0.05 * (1 + math.cos(math.pi * k / max_steps)))
    else:
        assert lrs == [0.1] * max_steps


def test_weight_decay_uses_adamw():
    t = Trainer(_linear(), nn.functional.mse_loss, _cfg(weight_decay=0.1))
    assert type(t.optimizer) is torch.optim.AdamW
    assert type(Trainer(_linear(), nn.functional.mse_loss, _cfg()).optimizer) is torch.optim.Adam


# ----------------------------------------------------------------------- stopping


def test_max_steps_stops(tmp_path):
    _, data = _regression(20)  # 5 steps per epoch
    t = Trainer(_linear(), nn.functional.mse_loss, _cfg(epochs=5, batch_size=4, max_steps=7),
                out_dir=tmp_path)
    r = t.fit(data, data)
    assert (r.stopped, r.global_step, r.epochs_done) == ("max_steps", 7, 1.4)
    assert [h["step"] for h in r.history] == [5, 7]
    assert "eval_loss" in r.history[-1]  # evaluated where it stopped
    assert load_checkpoint(tmp_path / "checkpoint.pt")["progress"]["global_step"] == 7
    # a cap beyond the run: stopped by the epochs
    r = Trainer(_linear(), nn.functional.mse_loss,
                _cfg(epochs=2, batch_size=4, max_steps=100)).fit(data)
    assert (r.stopped, r.global_step) == ("epochs", 10)


def test_time_budget_stops_and_excludes_evaluation(tmp_path):
    _, data = _regression(4)  # 2 steps per epoch

    def forward(model, batch):
        time.sleep(0.01 if model.training else 0.12)  # evaluation is slow
        return model(batch[0]), batch[1]

    t = Trainer(_linear(), nn.functional.mse_loss,
                _cfg(epochs=1000, batch_size=2, time_budget=0.1), forward=forward,
                out_dir=tmp_path)
    r = t.fit(data, data)
    assert r.stopped == "time_budget"
    # with evaluation counted the budget would run out at the first epoch end (step 2);
    # each step sleeps 0.01 s, so the budget is spent after at most 10 steps
    assert 2 < r.global_step <= 10
    assert r.elapsed >= 0.1
    assert r.history[-1]["step"] == r.global_step and "eval_loss" in r.history[-1]
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["progress"]["global_step"] == r.global_step
    assert ckpt["progress"]["elapsed"] >= 0.1


# -------------------------------------------------------------------- checkpoints


def test_checkpoint_loads_weights_only_and_holds_the_state(tmp_path):
    _, data = _regression(12)
    cfg = _cfg(batch_size=4, checkpoint_every=1)
    t = Trainer(_linear(), nn.functional.mse_loss, cfg, out_dir=tmp_path,
                model_config={"kind": "linear", "shape": (3, 5)})
    t.fit(data, data)
    assert _files(tmp_path) == ["checkpoint.pt", "metrics.jsonl", "model.pt"]  # no temp files
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert {"format", "format_version", "model", "optimizer", "scheduler", "rng", "progress",
            "config", "model_config", "history"} <= ckpt.keys()
    assert ckpt["config"] == cfg.to_dict() and TrainConfig.from_dict(ckpt["config"]) == cfg
    assert ckpt["model_config"] == {"kind": "linear", "shape": [3, 5]}
    assert ckpt["progress"]["global_step"] == 6 and ckpt["progress"]["epoch"] == 2
    assert ckpt["progress"]["batch_in_epoch"] == 0
    assert isinstance(ckpt["rng"][0]["cpu"], torch.Tensor)
    assert _state_equal(ckpt["model"], t.model.state_dict())
    final = torch.load(tmp_path / "model.pt", weights_only=True)
    assert _state_equal(final["model"], t.model.state_dict())
    assert final["config"] == cfg.to_dict() and final["model_config"] == ckpt["model_config"]
    fresh = load_model_state(nn.Linear(5, 3, bias=False), tmp_path / "model.pt")
    assert torch.equal(fresh.weight, t.model.weight)
    json.dumps(cfg.to_dict())


def test_load_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="corrupt"):
        load_checkpoint(tmp_path / "bad.pt")
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"not a sciml\.train checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """torch.save fails half-way through the third checkpoint: the second stays intact."""
    _, data = _regression(16)
    real_save = torch.save
    calls: list[int] = []

    def failing_save(obj, f, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            f.write(b"half a checkpoint")
            raise OSError("disk full")
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", failing_save)
    t = Trainer(_linear(), nn.functional.mse_loss, _cfg(batch_size=2, checkpoint_every=1),
                out_dir=tmp_path)
    with pytest.raises(OSError, match="disk full"):
        t.fit(data)
    monkeypatch.setattr(torch, "save", real_save)
    assert len(calls) == 3 and t.global_step == 3
    assert load_checkpoint(tmp_path / "checkpoint.pt")["progress"]["global_step"] == 2
    assert _files(tmp_path) == ["checkpoint.pt", "metrics.jsonl"]  # no temp file left


# ------------------------------------------------------------------------- resume


def test_resume_after_kill_mid_epoch_reaches_the_same_weights(tmp_path):
    """SIGKILL a run after 13 steps (epoch 2 of 10-step epochs); resume in a new process."""
    with torch.random.fork_rng(devices=[]):  # the script seeds the global RNG (dropout)
        script.run(str(tmp_path / "ref"), batch=4, dropout=0.1)
    out = tmp_path / "run"
    args = [str(SCRIPT), "--out", str(out), "--batch", "4", "--dropout", "0.1"]
    killed = _run(args, env={"TRAIN_SCRIPT_KILL_AFTER": "13"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    progress = load_checkpoint(out / "checkpoint.pt")["progress"]
    assert (progress["global_step"], progress["epoch"], progress["batch_in_epoch"]) == (12, 1, 2)
    assert not (out / "model.pt").exists()
    assert not [p for p in _files(out) if p.endswith(".tmp")]
    # a record the checkpoint does not know about and a line cut short by the kill
    with open(out / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"epoch": 1.5, "step": 15, "train_loss": 0.0}) + '\n{"epoch": 1.')
    resumed = _run([*args, "--resume"])
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["global_step"] == 20
    ref = torch.load(tmp_path / "ref" / "model.pt", weights_only=True)["model"]
    got = torch.load(out / "model.pt", weights_only=True)["model"]
    assert _state_equal(ref, got)  # bit for bit on the CPU

    def records(d: Path) -> list[dict]:
        lines = (d / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(s).items() if k != "elapsed"} for s in lines]

    assert [r["step"] for r in records(out)] == [10, 20]
    assert records(out) == records(tmp_path / "ref")


def test_resume_in_process_after_time_budget(tmp_path):
    """A run stopped by its time budget and resumed without one equals an uninterrupted run."""
    _, data = _regression(30)
    ref = Trainer(_linear(), nn.functional.mse_loss, _cfg(epochs=3, batch_size=4))
    ref.fit(data, data)

    def slow(model, batch):
        time.sleep(0.005)
        return model(batch[0]), batch[1]

    first = Trainer(_linear(), nn.functional.mse_loss,
                    _cfg(epochs=3, batch_size=4, time_budget=0.03), out_dir=tmp_path,
                    forward=slow).fit(data, data)
    assert first.stopped == "time_budget" and first.global_step < 24
    t = Trainer(_linear(), nn.functional.mse_loss, _cfg(epochs=3, batch_size=4),
                out_dir=tmp_path)
    r = t.fit(data, data, resume=True)
    assert (r.stopped, r.global_step, r.epochs_done) == ("epochs", 24, 3.0)
    assert r.elapsed >= first.elapsed
    assert torch.equal(t.model.weight, ref.model.weight)
    steps = [json.loads(s)["step"] for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 24
    assert steps == [h["step"] for h in r.history]


def test_resume_a_finished_run_does_nothing(tmp_path):
    _, data = _regression(8)
    cfg = _cfg(batch_size=4)
    first = Trainer(_linear(), nn.functional.mse_loss, cfg, out_dir=tmp_path).fit(data, data)
    t = Trainer(_linear(), nn.functional.mse_loss, cfg, out_dir=tmp_path)
    r = t.fit(data, data, resume=True)
    assert r.global_step == first.global_step and r.history == first.history
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2


def test_resume_without_checkpoint_starts_fresh(tmp_path, capsys):
    _, data = _regression(8)
    r = Trainer(_linear(), nn.functional.mse_loss, _cfg(batch_size=4),
                out_dir=tmp_path).fit(data, resume=True)
    assert r.global_step == 4
    assert "no checkpoint" in capsys.readouterr().err


def test_resume_with_other_settings_raises(tmp_path):
    _, data = _regression(8)
    Trainer(_linear(), nn.functional.mse_loss, _cfg(batch_size=4), out_dir=tmp_path).fit(data)
    for change, pattern in [
        ({"lr": 0.5}, r"lr=0.01 but this run has lr=0.5"),
        ({"batch_size": 2}, r"batch_size=4 but this run has batch_size=2"),
        ({"epochs": 3}, r"epochs=2 but this run has epochs=3"),
        ({"schedule": "cosine"}, r"schedule='onecycle' but this run has schedule='cosine'"),
        ({"seed": 1}, r"seed=0 but this run has seed=1"),
        ({"max_steps": 3}, r"max_steps=None but this run has max_steps=3"),
    ]:
        t = Trainer(_linear(), nn.functional.mse_loss, _cfg(**{"batch_size": 4, **change}),
                    out_dir=tmp_path)
        with pytest.raises(ValueError, match=pattern):
            t.fit(data, resume=True)
    _, other = _regression(12)
    with pytest.raises(ValueError, match="8 training samples but this run has 12"):
        Trainer(_linear(), nn.functional.mse_loss, _cfg(batch_size=4),
                out_dir=tmp_path).fit(other, resume=True)
    # settings that do not change the steps may differ
    Trainer(_linear(), nn.functional.mse_loss, _cfg(batch_size=4, eval_every=2,
                                                    checkpoint_every=1),
            out_dir=tmp_path).fit(data, resume=True)


# --------------------------------------------------------------------- torchrun


def test_two_processes_equal_one_with_the_double_batch(tmp_path):
    """torchrun, 2 CPU processes (gloo) with batch 2 == 1 process with batch 4."""
    res = _run(["-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
                str(SCRIPT), "--out", str(tmp_path / "ddp"), "--batch", "2"])
    assert res.returncode == 0, res.stderr[-3000:]
    # the two processes print at once, so their lines may run together: find each object
    ranks = sorted(json.loads(obj)["rank"] for obj in re.findall(r"\{[^{}]*\}", res.stdout))
    assert ranks == [0, 1]
    with torch.random.fork_rng(devices=[]):
        single, result = script.run(str(tmp_path / "one"), batch=4)
    got = torch.load(tmp_path / "ddp" / "model.pt", weights_only=True)["model"]
    for k, v in single.state_dict().items():
        assert torch.allclose(got[k], v, rtol=0, atol=1e-12), k
    lines = (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()
    ddp_records = [json.loads(s) for s in lines]
    assert [r["step"] for r in ddp_records] == [r["step"] for r in result.history] == [10, 20]
    for a, b in zip(ddp_records, result.history):
        for key in ("train_loss", "eval_loss", "eval_mae", "lr"):
            assert a[key] == pytest.approx(b[key], rel=1e-12), key
    assert load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")["progress"]["world_size"] == 2


# ------------------------------------------------------------------------ evaluate


def test_evaluate_is_sample_weighted():
    _, data = _regression(10)  # batches of 4, 4, 2
    model = _linear()
    t = Trainer(model, nn.functional.mse_loss, _cfg(batch_size=4), metrics={
        "abs": lambda p, y: (p - y).abs().mean(dim=1),      # per sample
        "sq": lambda p, y: ((p - y) ** 2).mean(),           # batch mean (scalar)
    })
    model.train()
    out = t.evaluate(data)
    assert model.training  # mode restored
    x, y = data.tensors
    with torch.no_grad():
        err = model(x) - y
    assert out["loss"] == pytest.approx(float((err ** 2).mean()), rel=1e-6)
    assert out["sq"] == pytest.approx(out["loss"], rel=1e-12)
    assert out["abs"] == pytest.approx(float(err.abs().mean()), rel=1e-6)
    bad = Trainer(model, nn.functional.mse_loss, _cfg(batch_size=4),
                  metrics={"bad": lambda p, y: (p - y).abs()})
    with pytest.raises(ValueError, match=r"bad returned shape \(4, 3\) for a batch of 4"):
        bad.evaluate(data)


# ---------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kw, pattern", [
    ({"epochs": 0}, "epochs must be >= 1, got 0"),
    ({"lr": 0.0}, "lr must be finite and > 0, got 0.0"),
    ({"lr": math.nan}, "lr must be finite and > 0, got nan"),
    ({"batch_size": 0}, "batch_size must be >= 1, got 0"),
    ({"schedule": "linear"}, "schedule must be one of .* got 'linear'"),
    ({"weight_decay": -1.0}, "weight_decay must be finite and >= 0, got -1.0"),
    ({"grad_clip": 0.0}, "grad_clip must be finite and > 0, got 0.0; use None"),
    ({"max_steps": 0}, "max_steps must be >= 1, got 0; use None"),
    ({"time_budget": -1.0}, "time_budget must be finite and > 0, got -1.0"),
    ({"checkpoint_every": 0}, "checkpoint_every must be >= 1, got 0"),
    ({"eval_every": 0}, "eval_every must be >= 1, got 0"),
    ({"seed": -1}, "seed must be >= 0, got -1"),
])
def test_bad_config_raises(kw, pattern):
    with pytest.raises(ValueError, match=pattern):
        TrainConfig(**{"epochs": 1, **kw})


def test_bad_config_types_raise():
    with pytest.raises(TypeError, match="epochs must be an int"):
        TrainConfig(epochs=2.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="shuffle must be True or False"):
        TrainConfig(epochs=1, shuffle=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown TrainConfig setting"):
        TrainConfig.from_dict({"epochs": 1, "momentum": 0.9})


def test_bad_trainer_arguments_raise(tmp_path):
    _, data = _regression(8)
    mse = nn.functional.mse_loss
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module"):
        Trainer(lambda x: x, mse, _cfg())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'loss' is reserved"):
        Trainer(_linear(), mse, _cfg(), metrics={"loss": mse})
    with pytest.raises(ValueError, match="model_config must be JSON-safe"):
        Trainer(_linear(), mse, _cfg(), model_config={"f": object()})
    t = Trainer(_linear(), mse, _cfg())
    with pytest.raises(ValueError, match="train_data is empty"):
        t.fit(TensorDataset(torch.zeros(0, 5), torch.zeros(0, 3)))
    with pytest.raises(ValueError, match="eval_data is empty"):
        t.fit(data, TensorDataset(torch.zeros(0, 5), torch.zeros(0, 3)))
    with pytest.raises(ValueError, match="data is empty"):
        t.evaluate(TensorDataset(torch.zeros(0, 5), torch.zeros(0, 3)))
    with pytest.raises(TypeError, match="map-style torch Dataset"):
        t.fit(iter([1, 2]))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="resume=True needs out_dir"):
        t.fit(data, resume=True)
    with pytest.raises(ValueError, match="default forward takes batches"):
        t.fit(TensorDataset(torch.zeros(4, 5)))
    with pytest.raises(ValueError, match="loss must return a scalar"):
        Trainer(_linear(), lambda p, y: (p - y) ** 2, _cfg()).fit(data)


def test_non_finite_loss_raises_and_keeps_the_checkpoint(tmp_path):
    _, data = _regression(8)
    x, y = data.tensors
    y = y.clone()
    y[6] = math.nan  # in the 4th batch of 2 (no shuffling)
    t = Trainer(_linear(), nn.functional.mse_loss,
                _cfg(batch_size=2, shuffle=False, checkpoint_every=1), out_dir=tmp_path)
    with pytest.raises(FloatingPointError, match=r"nan at step 4 .*lower the learning rate"):
        t.fit(TensorDataset(x, y))
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["progress"]["global_step"] == 3
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())
    assert not (tmp_path / "model.pt").exists()
    assert not [p for p in _files(tmp_path) if p.endswith(".tmp")]
