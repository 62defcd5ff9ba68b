"""Training and scoring bundled time steppers (MP-PDE, the FNO baseline) on the 1D family.

* :func:`build_stepper`: an :class:`~sciml.operators.MPPDE` or a
  :class:`~sciml.operators.BundledFNO` sized for a :class:`~sciml.data.BurgersDataset`.
* :func:`train_stepper`: pushforward training through the one
  :class:`~sciml.train.Trainer` (resumable, progress bar, time budget).
* :func:`rollout_error`: the paper's protocol: start from the labels at steps
  ``K .. 2K - 1``, roll out to the last stored step, accumulated MSE over steps
  ``2K .. nt - 1`` (Brandstetter et al. 2022, table 1), and the rollout's wall time.
* :func:`weno5_error`: the classical baseline under the same protocol, WENO5 at the
  data's own grid (or a coarser one, interpolated back) started from the same label.
* :func:`load_stepper`: rebuild a trained model from the run folder.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import torch
from torch import Tensor, nn

from sciml.data import BurgersDataset
from sciml.spectral import cell_average_resample
from sciml.utils import check_bool, check_choice, check_device, check_int

from .._checks import check_instance, check_path

__all__ = ["build_stepper", "load_stepper", "rollout_error", "train_stepper", "weno5_error"]

MODEL_FILE = "model.pt"


def _check_data(name: str, data: object) -> BurgersDataset:
    return check_instance(name, data, BurgersDataset,
                          hint="read a file of generate_burgers with BurgersDataset(path, nx)")


def _check_stepper(model: object) -> nn.Module:
    """A bundled stepper: a module with a ``time_window`` and a ``config()``."""
    check_instance("model", model, nn.Module, hint="build one with build_stepper(kind, data)")
    if not isinstance(getattr(model, "time_window", None), int) or not callable(
            getattr(model, "config", None)):
        raise TypeError(f"model must be a bundled stepper (an MPPDE or a BundledFNO, with a "
                        f"time_window and config()), got {type(model).__name__}; build one "
                        "with build_stepper(kind, data)")
    return model


def _check_long_enough(data: BurgersDataset, K: int, name: str = "time_window") -> None:
    nt = len(data.t)
    if nt < 3 * K:
        raise ValueError(f"trajectories of {nt} steps are too short for {name} {K}: the "
                         f"protocol reads steps K .. 2K - 1 and scores 2K .. nt - 1, so it "
                         f"needs at least {3 * K} steps")


def _check_samples(samples: object, data: BurgersDataset) -> None:
    if samples is not None:
        check_int("samples", samples, minimum=1, fix="or None for all")
    if len(data) == 0:
        raise ValueError("data holds no trajectories")


def build_stepper(kind: str, data: BurgersDataset, *, time_window: int = 25,
                  **options) -> nn.Module:
    """A fresh model for ``data`` (a :class:`~sciml.data.BurgersDataset`): ``kind`` is
    ``"mppde"`` or ``"fno"``; ``options`` go to the constructor (e.g. ``hidden=64``).

    Raises:
        TypeError, ValueError: ``kind``, ``data`` or ``time_window`` is wrong (named); the
            constructor checks ``options``.
    """
    from sciml.operators import MPPDE, BundledFNO

    kind = check_choice("kind", kind, ("mppde", "fno"))
    _check_data("data", data)
    check_int("time_window", time_window, minimum=1)
    tmax = float(data.t[-1])
    if kind == "mppde":
        return MPPDE(time_window, dt=data.dt, length=data.length, n_params=3, tmax=tmax,
                     **options)
    options.setdefault("modes", min(16, data.nx // 2))
    return BundledFNO(time_window, dt=data.dt, n_params=3, tmax=tmax, **options)


def train_stepper(model: nn.Module, train: BurgersDataset, *, steps: int = 2000, lr: float = 1e-3,
                  batch_size: int = 16, max_unroll: int = 2, grow_every: int | None = None,
                  weight_decay: float = 0.0, time_budget: float | None = None,
                  out_dir: str | os.PathLike | None = None, seed: int = 0,
                  progress: bool = True, device: str | torch.device | None = None):
    """Pushforward training of a bundled stepper on whole trajectories of ``train``.

    Adam(W), cosine schedule over ``steps``; the allowed unrolls grow from 0 to
    ``max_unroll`` over the first half of the steps (``grow_every``, default
    ``steps // (2 (max_unroll + 1))``), as the paper grows them per epoch. With
    ``out_dir`` the run checkpoints there and a rerun resumes; the model's constructor
    arguments are stored so :func:`load_stepper` rebuilds it. ``device``: where to train
    (default: the CPU, or ``cuda:LOCAL_RANK`` under torchrun on a CUDA machine; the rule
    of :func:`sciml.utils.check_device` with ``resolve=True``); the model stays there.

    Returns:
        the :class:`~sciml.train.TrainResult`.

    Raises:
        TypeError, ValueError: an argument of the wrong kind (named), before any training.
    """
    from sciml.train import TrainConfig, Trainer
    from sciml.train.rollout import Pushforward

    steps = check_int("steps", steps, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    max_unroll = check_int("max_unroll", max_unroll, minimum=0)
    _check_stepper(model)
    _check_data("train", train)
    if len(train) == 0:
        raise ValueError("train holds no trajectories")
    if out_dir is not None:
        check_path("out_dir", out_dir, optional=True)
    device = check_device(device, "device", resolve=True)
    check_bool("progress", progress)
    if grow_every is None:
        grow_every = max(1, steps // (2 * (max_unroll + 1)))
    obj = Pushforward(max_unroll=max_unroll, grow_every=grow_every)
    per_epoch = math.ceil(len(train) / batch_size)
    cfg = TrainConfig(epochs=math.ceil(steps / per_epoch), max_steps=steps, lr=lr,
                      batch_size=batch_size, schedule="cosine", weight_decay=weight_decay,
                      time_budget=time_budget, seed=seed, progress=progress,
                      checkpoint_every=200, eval_every=10**9)
    run = None if out_dir is None else Path(out_dir)
    kind = "mppde" if type(model).__name__ == "MPPDE" else "fno"
    trainer = Trainer(model, obj.loss, cfg, out_dir=run, forward=obj.forward, device=device,
                      model_config={"kind": kind, **model.config()})
    obj.trainer = trainer
    result = trainer.fit(train, resume=run is not None and (run / "checkpoint.pt").exists())
    if run is not None:
        from sciml.train import save_weights

        # the weights are stored from the CPU: the file reads the same on any machine
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        save_weights({"kind": kind, "config": model.config(), "state": state,
                      "steps": result.global_step}, run / MODEL_FILE)  # atomic, with checksums
    model.eval()
    return result


def load_stepper(run: str | os.PathLike, *, file: str = MODEL_FILE,
                 device: str | torch.device = "cpu") -> nn.Module:
    """The model a :func:`train_stepper` run with ``out_dir=run`` wrote (eval mode), on
    ``device`` (read on the CPU, then moved)."""
    from sciml.operators import MPPDE, BundledFNO
    from sciml.train import load_weights, rebuild_model

    run = check_path("run", run)
    if not isinstance(file, str) or not file:
        raise TypeError(f"file must be the name of the weights file in run (default "
                        f"{MODEL_FILE!r}), got {file!r}")
    device = check_device(device, "device", resolve=True)
    path = run / file
    if not path.is_file():
        raise FileNotFoundError(f"no file {file!r} in run {str(run)!r}: train it first "
                                f"(sciml train mppde --out {run} ...)")
    fix = (f"move {path} away and rerun the training (train_stepper(..., out_dir={str(run)!r}) "
           "or sciml train mppde), which resumes from its checkpoint")
    blob = load_weights(path, keys=("kind", "config", "state"), fix=fix)
    classes = {"mppde": MPPDE, "fno": BundledFNO}
    if not isinstance(blob["kind"], str) or blob["kind"] not in classes:
        raise ValueError(f"{path} holds a model of kind {blob['kind']!r}, not one of "
                         f"{sorted(classes)}; {fix}")
    model = rebuild_model(path, classes[blob["kind"]], blob["config"], blob["state"], fix=fix)
    return model.to(device).eval()


def _stack(data, samples: int | None) -> tuple[Tensor, Tensor]:
    n = len(data) if samples is None else min(samples, len(data))
    us, th = zip(*(data[i] for i in range(n)))
    return torch.stack(us), torch.stack(th)


@torch.no_grad()
def rollout_error(model: nn.Module, data: BurgersDataset, *, samples: int | None = None,
                  batch_size: int = 128) -> dict[str, float]:
    """Accumulated MSE of ``model``'s rollout on ``data`` and the rollout's wall time.

    The model reads the labels at steps ``K .. 2K - 1`` and predicts ``2K .. nt - 1``
    (the paper's protocol); the error is summed over those steps and averaged over space
    and samples (:func:`~sciml.train.rollout.accumulated_mse`). ``rollout_s`` is the time
    of the rollouts alone (batches of ``batch_size``), excluding data loading. The
    rollouts and the error run on the model's device (the data are moved there once; on
    a GPU the clock stops after the device has finished).

    Raises:
        TypeError, ValueError: an argument of the wrong kind (named), or trajectories
            shorter than ``3 * model.time_window`` steps.
    """
    from sciml.train.rollout import accumulated_mse, rollout

    _check_stepper(model)
    _check_data("data", data)
    _check_samples(samples, data)
    check_int("batch_size", batch_size, minimum=1)
    K = model.time_window
    _check_long_enough(data, K, "model.time_window")
    model.eval()
    p = next(model.parameters())
    dtype, device = p.dtype, p.device
    u, theta = _stack(data, samples)
    u, theta = u.to(device), theta.to(device, dtype)  # once, not per batch
    nt = u.shape[1]
    t_start = float(data.t[2 * K - 1])
    preds, elapsed = [], 0.0
    for i in range(0, u.shape[0], batch_size):
        ub, tb = u[i:i + batch_size].to(dtype), theta[i:i + batch_size]
        t = torch.full((ub.shape[0],), t_start, dtype=dtype, device=device)
        _wait(device)  # the copies above stay out of the clock
        t0 = time.perf_counter()
        preds.append(rollout(model, ub[:, K:2 * K], t, tb, nt - 2 * K))
        _wait(device)
        elapsed += time.perf_counter() - t0
    pred = torch.cat(preds)
    err = accumulated_mse(pred.double(), u[:, 2 * K:].double())
    return {"accumulated_mse": float(err), "rollout_s": elapsed, "samples": int(u.shape[0])}


def _wait(device: torch.device) -> None:
    """Wait for the GPU's queued work (a timed section ends when its kernels do)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def weno5_error(data: BurgersDataset, *, nx: int | None = None, samples: int | None = None,
                time_window: int = 25, start: str = "label",
                dtype: torch.dtype = torch.float64) -> dict[str, float]:
    """Accumulated MSE of our WENO5 under :func:`rollout_error`'s protocol.

    With ``start="label"`` WENO5 starts from the label at step ``2K - 1`` (the last step a
    learned model reads) and solves to the last stored step on ``nx`` cells (default:
    the data's own grid), in the data's convention. With ``start="t0"`` it solves from
    ``t = 0`` on its own initial condition at ``nx`` (what the original pipeline's
    baseline does), scored on the same steps. For a coarser ``nx`` (a divisor of the
    data's grid; the conservative convention only) a label start is block averaged and
    the result is brought back to the data's grid by band-limited (Fourier) interpolation
    of the cell averages. ``rollout_s`` is the batched solve's wall time.

    Raises:
        TypeError, ValueError: an argument of the wrong kind (named), before any solve.
    """
    from sciml.pdes.burgers import initial_condition, solve_combined
    from sciml.train.rollout import accumulated_mse

    _check_data("data", data)
    n = data.nx
    nx = n if nx is None else check_int("nx", nx, minimum=4)
    _check_samples(samples, data)
    check_int("time_window", time_window, minimum=1)
    _check_long_enough(data, time_window)
    start = check_choice("start", start, ("label", "t0"))
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    u, _ = _stack(data, samples)
    if nx != n and (data.convention != "conservative" or n % nx):
        raise ValueError(f"a coarser WENO5 grid needs the conservative convention and a "
                         f"divisor of nx={n}, got nx={nx} ({data.convention})")
    K = time_window
    params = data.parameters(range(u.shape[0]))
    t = torch.as_tensor(data.t, dtype=dtype)
    if start == "label":
        u0 = u[:, 2 * K - 1].to(dtype)
        if nx != n:
            u0 = u0.reshape(u0.shape[0], nx, n // nx).mean(-1)
        t_start, times = float(t[2 * K - 1]), t[2 * K:]
    else:
        u0 = initial_condition(params, nx, convention=data.convention,
                               length=data.length).to(dtype)
        t_start, times = 0.0, t[1:]
    t0 = time.perf_counter()
    sol = solve_combined(u0, params, times, length=data.length,
                         convention=data.convention, t0=t_start)
    elapsed = time.perf_counter() - t0
    if start == "t0":
        sol = sol[:, 2 * K - 1:]
    sol = cell_average_resample(sol, n)
    err = accumulated_mse(sol.double(), u[:, 2 * K:].double())
    return {"accumulated_mse": float(err), "rollout_s": elapsed, "samples": int(u.shape[0]),
            "nx": nx}

