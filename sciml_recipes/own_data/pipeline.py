"""Train and evaluate an FNO or SFNO on the user's own arrays: the work behind
``sciml train fno|sfno --data FILE`` and ``sciml evaluate`` for such models.

Everything here goes through the library's public API: :class:`sciml.data.ArrayData`
reads the file, :class:`sciml.train.Trainer` trains, :func:`sciml.train.evaluate_samples`
scores each test sample.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from sciml.data import ArrayData, Normalization
from sciml.operators import FNO, SFNO, RelativeLpLoss, relative_lp
from sciml.train import TrainConfig, Trainer, TrainResult, evaluate_samples, load_checkpoint
from sciml.utils import check_bool, check_choice, check_device, check_int
from sciml_recipes._checks import check_file, check_instance, check_path

__all__ = ["KIND", "build_model", "evaluate_operator", "load_operator", "model_kind",
           "train_operator"]

#: ``model_config["kind"]`` of a model trained here
KIND = "own-data"


def build_model(kind: str, data: ArrayData, *, modes: int | None = None,
                modes_t: int | None = None, width: int = 32, layers: int = 4) -> nn.Module:
    """The network for ``data``: an :class:`~sciml.operators.FNO` (pairs or trajectory
    windows, input frames as channels) or an :class:`~sciml.operators.SFNO` (trajectories
    on a 2D grid).

    ``modes`` (per grid axis) defaults to 12, at most half the training grid; ``modes_t``
    (SFNO) to 5, at most half the input and output lengths plus one.
    """
    check_choice("kind", kind, ("fno", "sfno"))
    check_instance("data", data, ArrayData, hint="describe the file with ArrayData(path, ...)")
    grid = data.grid()
    m = [min(12 if modes is None else check_int("modes", modes, minimum=1), n // 2)
         for n in grid]
    if min(m) < 1:
        raise ValueError(f"the training grid {grid} is too coarse for a Fourier layer "
                         "(2 points per axis at least); use a smaller subsample")
    if kind == "fno":
        c_in, c_out = data.channels
        return FNO(c_in, c_out, width=width, modes=tuple(m), layers=layers)
    if data.layout != "trajectories" or len(grid) != 2:
        raise ValueError(
            "the SFNO learns 2D trajectories (samples, time, n_x, n_y); this data set is "
            f"{data.layout} on a {len(grid)}D grid: pass the trajectories' key "
            "(--trajectories KEY), or train an FNO (`sciml train fno`)")
    cap = min(data.input_steps, data.output_steps) // 2 + 1
    mt = min(5 if modes_t is None else check_int("modes_t", modes_t, minimum=1), cap)
    return SFNO((m[0], m[1]), mt, width, layers=layers, out_steps=data.output_steps)


def train_operator(
    data: ArrayData, out_dir: str | os.PathLike, config: TrainConfig, *,
    model: nn.Module, resume: bool = False, device: str | torch.device | None = None,
) -> tuple[nn.Module, TrainResult]:
    """Train ``model`` (an FNO or SFNO from :func:`build_model`) on the train split with
    the relative L2 loss on normalised fields; evaluate on the test split each epoch.

    Writes ``out_dir/checkpoint.pt`` (``resume=True`` continues it: same settings, data of
    the same content), ``out_dir/model.pt`` (weights, the data description and the
    normalisation statistics: :func:`load_operator` rebuilds everything from it) and
    ``out_dir/metrics.jsonl``.
    """
    check_instance("data", data, ArrayData, hint="describe the file with ArrayData(path, ...)")
    check_path("out_dir", out_dir)
    check_instance("config", config, TrainConfig, hint="such as TrainConfig(epochs=10)")
    check_instance("model", model, (FNO, SFNO), hint="build one with build_model(...)")
    check_bool("resume", resume)
    device = check_device(device, "device", resolve=True)
    norm = data.statistics()
    train, test = data.dataset("train", normalization=norm), data.dataset(
        "test", normalization=norm)
    if len(train) == 0 or len(test) == 0:
        raise ValueError(f"the split of {data.path} leaves an empty part ({len(train)} train, "
                         f"{len(test)} test items); use a smaller stride or more frames")
    kind = "sfno" if isinstance(model, SFNO) else "fno"
    trainer = Trainer(
        model, RelativeLpLoss(), config, out_dir=out_dir, device=device,
        metrics={"rel_l2": relative_lp},
        model_config={"kind": KIND, "network": kind, "model": model.config(),
                      "data": data.settings(), "normalization": norm.to_dict()},
        data_files={"data": data.path},  # a resume must read data of the same content
    )
    result = trainer.fit(train, test, resume=resume)
    return trainer.model, result


def model_kind(path: str | os.PathLike) -> str:
    """The ``kind`` recorded in a model file of ``sciml train`` (``"sfno"`` for the
    Navier-Stokes SFNO, :data:`KIND` for a model of the user's arrays)."""
    path = check_file("path", path, hint="pass the model.pt written by `sciml train`")
    return str((load_checkpoint(path).get("model_config") or {}).get("kind"))


def load_operator(path: str | os.PathLike, *, data: str | os.PathLike | None = None,
                  device: str | torch.device = "cpu"
                  ) -> tuple[nn.Module, ArrayData, Normalization]:
    """Rebuild a model trained by :func:`train_operator`, its data description (on ``data``
    if given: the file moved, or another file with the same keys) and its normalisation.

    Raises:
        FileNotFoundError: no model file, or the recorded data file is gone and ``data`` is
            not given.
        ValueError: the file holds another kind of model, or as
            :func:`~sciml.train.load_checkpoint`.
    """
    path = check_file("path", path, hint="pass the model.pt written by `sciml train fno`")
    device = check_device(device, "device", resolve=True)
    ckpt = load_checkpoint(path, map_location=device)
    cfg = ckpt.get("model_config") or {}
    if cfg.get("kind") != KIND:
        raise ValueError(f"{path} does not hold a model of your own arrays (model_config kind "
                         f"= {cfg.get('kind')!r}); pass the model.pt written by `sciml train "
                         "fno|sfno --data FILE`")
    settings = dict(cfg["data"])
    if data is not None:
        settings["path"] = str(check_file("data", data, hint="pass the HDF5 or NPZ file"))
    elif not os.path.isfile(settings["path"]):
        raise FileNotFoundError(
            f"the data file {settings['path']!r} recorded in {str(path)!r} does not exist; "
            "pass data= the file's new path (`--data` on the command line)")
    kwargs = dict(cfg["model"])
    kwargs["modes"] = tuple(kwargs["modes"])
    model = (SFNO if cfg["network"] == "sfno" else FNO)(**kwargs)
    model.load_state_dict(ckpt["model"])
    return (model.to(device).eval(), ArrayData(**settings),
            Normalization(**cfg["normalization"]))


def _rmse(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (p - y).reshape(p.shape[0], -1).pow(2).mean(1).sqrt()


def evaluate_operator(
    model: nn.Module, data: ArrayData, normalization: Normalization, *,
    subsample: int | None = None, batch_size: int = 8, device: str | torch.device = "cpu",
) -> dict[str, object]:
    """Errors of a trained model on each test item, in the data's units, at the training
    resolution and zero-shot at every finer one the file holds.

    Resolutions: ``"training"`` (the training subsample, or ``subsample`` if given), then
    ``"stored"`` (the full stored grid, when the model was trained on a subsample) and
    ``"fine"`` (the fine arrays, when the file has them). Each entry holds the grid, the
    per-item relative L2 error and RMSE (lists), their mean / median / max, and the
    ``(sample, first frame)`` of each item.
    """
    check_instance("model", model, (FNO, SFNO))
    check_instance("data", data, ArrayData)
    check_instance("normalization", normalization, Normalization)
    device = check_device(device, "device", resolve=True)
    parts = [("training", "test", data.subsample if subsample is None else subsample)]
    if subsample is None and data.subsample > 1:
        parts.append(("stored", "test", 1))
    if data.has_fine:
        parts.append(("fine", "fine", None))
    out: dict[str, object] = {"layout": data.layout, "resolutions": []}
    for name, part, k in parts:
        ds = data.dataset(part, normalization=normalization, subsample=k)
        errs = evaluate_samples(model, ds, {"rel_l2": relative_lp, "rmse": _rmse},
                                batch_size=batch_size, device=device,
                                transform=ds.denormalize)
        items = [(ds.samples[i // ds.windows_per_sample],
                  (i % ds.windows_per_sample) * ds.stride) for i in range(len(ds))]
        rel = errs["rel_l2"]
        out["resolutions"].append({
            "name": name, "part": part, "subsample": ds.subsample, "grid": list(ds.grid),
            "items": [list(it) for it in items],
            "rel_l2_per_item": rel.tolist(), "rmse_per_item": errs["rmse"].tolist(),
            "rel_l2": float(rel.mean()), "rel_l2_median": float(rel.median()),
            "rel_l2_max": float(rel.max()), "worst_item": int(rel.argmax()),
            "rmse": float(errs["rmse"].mean()),
        })
    return out
