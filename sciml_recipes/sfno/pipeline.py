"""Train, evaluate and refine the SFNO on Navier-Stokes data: the work behind ``sciml train``.

Scripts, the command line, the benchmark and the demo all go through these functions, so
a split, a metric or a file written here means the same everywhere.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from sciml.data import NS2DDataset
from sciml.operators import (
    SFNO,
    NSResidualLoss,
    RefineResult,
    RelativeLpLoss,
    SpectralRefiner,
    relative_lp,
    relative_sobolev,
)
from sciml.spectral import error_spectrum
from sciml.train import TrainConfig, Trainer, TrainResult, load_checkpoint
from sciml.utils import check_bool, check_choice, check_device, check_int
from sciml_recipes._checks import (
    check_file,
    check_indices,
    check_instance,
    check_path,
)
from sciml_recipes.benchtools import write_json_atomic as write_json

__all__ = [
    "NSData",
    "evaluate_model",
    "load_sfno",
    "refine_model",
    "train_sfno",
    "write_json",
]


@dataclass(frozen=True)
class NSData:
    """Which windows of a Navier-Stokes file a model sees: the split and the window shape.

    Args:
        path: the HDF5 file of :func:`sciml.data.generate_ns2d` (a str or a Path; stored as
            a str).
        input_steps, output_steps: frames in and out.
        stride: steps between training windows.
        test_stride: steps between test windows.
        subsample: spatial stride (2 reads a 128^2 file at 64^2).
        test_samples: the number of trajectories held out (the last ones in the file).
    """

    path: str
    input_steps: int = 10
    output_steps: int = 10
    stride: int = 4
    test_stride: int = 40
    subsample: int = 1
    test_samples: int = 8

    def __post_init__(self) -> None:
        path = check_file("path", self.path,
                          hint="pass the HDF5 file written by `sciml generate ns2d`")
        object.__setattr__(self, "path", str(path))
        for name in ("input_steps", "output_steps", "stride", "test_stride", "subsample"):
            check_int(name, getattr(self, name), minimum=1)
        check_int("test_samples", self.test_samples, minimum=1)

    def split(self) -> tuple[list[int], list[int]]:
        """Train and test trajectory indices: the last ``test_samples`` are held out."""
        n = NS2DDataset(self.path, input_steps=self.input_steps,
                        output_steps=self.output_steps, subsample=self.subsample)
        total = len(n.samples)
        if self.test_samples >= total:
            raise ValueError(
                f"test_samples = {self.test_samples} leaves nothing to train on: {self.path} "
                f"holds {total} trajectories; hold out fewer"
            )
        return list(range(total - self.test_samples)), list(range(total - self.test_samples,
                                                                  total))

    def dataset(self, part: str, *, subsample: int | None = None) -> NS2DDataset:
        """The ``"train"`` or ``"test"`` windows (``subsample`` overrides the spatial stride)."""
        if part not in ("train", "test"):
            raise ValueError(f"part must be 'train' or 'test', got {part!r}")
        train, test = self.split()
        ds = NS2DDataset(
            self.path, input_steps=self.input_steps, output_steps=self.output_steps,
            stride=self.stride if part == "train" else self.test_stride,
            samples=train if part == "train" else test,
            subsample=self.subsample if subsample is None else subsample,
        )
        _check_normaliser(ds.path, ds.mean, ds.std, "data file",
                          "regenerate the file with `sciml generate ns2d` (and retrain any "
                          "model trained on it)")
        return ds


def _check_normaliser(path: object, mean: float, std: float, what: str, fix: str) -> None:
    """Refuse a normalisation ``(w - mean) / std`` that cannot work, naming the file."""
    if not (math.isfinite(mean) and math.isfinite(std)):
        raise ValueError(
            f"the normalisation std stored in the {what} {path} is {std} (mean {mean}): the "
            "vorticity it was computed from holds NaN or Inf, or the statistics were never "
            f"computed; {fix}"
        )
    if std <= 0:
        raise ValueError(
            f"the normalisation std stored in the {what} {path} is {std}: the vorticity has "
            f"zero variance (every value is {mean}), so the normaliser (w - mean) / std is "
            f"degenerate; {fix}"
        )


def train_sfno(
    data: NSData,
    out_dir: str | os.PathLike,
    config: TrainConfig,
    *,
    model: SFNO | None = None,
    resume: bool = False,
    device: str | torch.device | None = None,
) -> tuple[SFNO, TrainResult]:
    """Train an SFNO on the train split with the relative L2 loss; evaluate on the test split.

    Writes ``out_dir/checkpoint.pt`` (resumable: a resume must use the same model settings
    and data of the same content, by fingerprint), ``out_dir/model.pt`` and
    ``out_dir/metrics.jsonl``. The default model is ``SFNO(12, 5, width=20)`` (the
    settings of Cao et al. for the FNO data), with as many output frames as the data's
    ``output_steps``.

    Raises:
        TypeError, ValueError: an argument of the wrong kind (named), before any training.
    """
    check_instance("data", data, NSData, hint="describe the file with NSData(path, ...)")
    check_path("out_dir", out_dir)
    check_instance("config", config, TrainConfig, hint="such as TrainConfig(epochs=10)")
    check_instance("model", model, SFNO, optional=True,
                   hint="pass an SFNO, or None for the default one")
    check_bool("resume", resume)
    # None: the CPU, or cuda:LOCAL_RANK under torchrun on a CUDA machine
    device = check_device(device, "device", resolve=True)
    frames = None if model is None else model.out_steps or data.input_steps
    if frames is not None and frames != data.output_steps:
        raise ValueError(f"model predicts {frames} frames but data.output_steps = "
                         f"{data.output_steps}; build the SFNO with "
                         f"out_steps={data.output_steps}")
    if model is None:
        torch.manual_seed(config.seed)  # the initial weights follow the seed too
        model = SFNO(12, min(5, data.input_steps // 2 + 1, data.output_steps // 2 + 1), 20,
                     out_steps=data.output_steps)
    train, test = data.dataset("train"), data.dataset("test")
    trainer = Trainer(
        model, RelativeLpLoss(), config, out_dir=out_dir, device=device,
        metrics={"rel_l2": relative_lp},
        model_config={"kind": "sfno", "model": model.config(), "data": asdict(data),
                      "mean": train.mean, "std": train.std},
        data_files={"data": data.path},  # a resume must read data of the same content
    )
    result = trainer.fit(train, test, resume=resume)
    return trainer.model, result  # type: ignore[return-value]


def load_sfno(path: str | os.PathLike, *, data: str | os.PathLike | None = None,
              device: str | torch.device = "cpu") -> tuple[SFNO, NSData]:
    """Rebuild a trained SFNO and its data description from ``model.pt`` or a checkpoint.

    Args:
        path: the ``model.pt`` (or ``checkpoint.pt``) written by :func:`train_sfno`.
        data: the HDF5 file to describe (default: the file the model was trained on, as
            recorded in ``path``); pass it when that file has moved, or to evaluate on
            another file.
        device: where to put the model.

    Raises:
        FileNotFoundError: no file at ``path``, or the recorded data file is gone and
            ``data`` is not given.
        ValueError: as :func:`~sciml.train.load_checkpoint`; also a ``device`` this machine
            lacks, a file that holds another model, or a stored normalisation that cannot
            work (std NaN or 0).
    """
    path = check_file("path", path, hint="pass the model.pt written by `sciml train sfno`")
    if data is not None:
        data = check_file("data", data, hint="pass the HDF5 file of `sciml generate ns2d`")
    device = check_device(device, "device", resolve=True)
    ckpt = load_checkpoint(path, map_location=device)
    cfg = ckpt.get("model_config") or {}
    if cfg.get("kind") != "sfno":
        raise ValueError(
            f"{path} does not hold an SFNO (model_config kind = {cfg.get('kind')!r}); pass the "
            "model.pt written by `sciml train sfno`"
        )
    if "std" in cfg:
        _check_normaliser(path, float(cfg.get("mean", 0.0)), float(cfg["std"]), "model file",
                          "retrain the model with `sciml train sfno` on a file whose fields "
                          "vary")
    kwargs = dict(cfg["model"])
    kwargs["modes"] = tuple(kwargs["modes"])
    described = dict(cfg["data"])
    if data is not None:
        described["path"] = str(data)
    elif not os.path.isfile(described["path"]):
        raise FileNotFoundError(
            f"the data file {described['path']!r} recorded in {str(path)!r} does not exist; "
            "pass data= the file's new path (`--data` on the command line)")
    model = SFNO(**kwargs)
    model.load_state_dict(ckpt["model"])
    return model.to(device).eval(), NSData(**described)


def _check_model_and_windows(model: object, ds: object, cls: type) -> None:
    check_instance("model", model, cls)
    check_instance("ds", ds, NS2DDataset, hint="such as NSData(path).dataset('test')")
    if len(ds) == 0:
        raise ValueError(f"ds holds no windows ({ds.path}); use a smaller stride or more "
                         "frames per trajectory")


def _batches(ds: NS2DDataset, batch_size: int):
    for i in range(0, len(ds), batch_size):
        items = [ds[k] for k in range(i, min(len(ds), i + batch_size))]
        yield torch.stack([a for a, _ in items]), torch.stack([b for _, b in items])


@torch.no_grad()
def evaluate_model(
    model: nn.Module, ds: NS2DDataset, *, batch_size: int = 4,
    device: str | torch.device = "cpu",
) -> dict[str, object]:
    """Relative L2 and H^1 errors of a model on a data set, per window and per frame.

    Errors are of the physical vorticity (the normalisation undone), per frame over space:
    ``rel_l2[w, t] = ||pred - truth||_2 / ||truth||_2`` and the same in H^1; the overall
    ``rel_l2`` is the Bochner L2(0, T; L2) error averaged over the windows (the training
    metric). Also the shell spectra of the error and of the truth.

    Raises:
        TypeError, ValueError: an argument of the wrong kind (named), or an empty ``ds``.
    """
    _check_model_and_windows(model, ds, nn.Module)
    check_int("batch_size", batch_size, minimum=1, fix="such as 4")
    device = check_device(device, "device", resolve=True)
    model = model.to(device).eval()
    l2, h1, l2_t, h1_t, err_spec, true_spec = [], [], [], [], 0.0, 0.0
    batches = 0
    length = float(ds.attrs.get("length", 1.0))
    for x, y in _batches(ds, batch_size):
        p = ds.denormalize(model(x.to(device)).cpu().to(torch.float64))
        y = ds.denormalize(y.to(torch.float64))
        l2.append(relative_lp(p, y))
        h1.append(relative_sobolev(p, y, 1.0, lengths=(length, length)))
        b, t = y.shape[:2]
        l2_t.append(relative_lp(p.reshape(b * t, -1), y.reshape(b * t, -1)).reshape(b, t))
        h1_t.append(relative_sobolev(p.reshape(b * t, 1, *y.shape[2:]),
                                     y.reshape(b * t, 1, *y.shape[2:]), 1.0,
                                     lengths=(length, length)).reshape(b, t))
        e, s = error_spectrum(p, y)
        err_spec, true_spec, batches = err_spec + e, true_spec + s, batches + 1
    return {
        "rel_l2": float(torch.cat(l2).mean()), "rel_h1": float(torch.cat(h1).mean()),
        "rel_l2_per_window": torch.cat(l2).tolist(), "rel_h1_per_window": torch.cat(h1).tolist(),
        "rel_l2_per_frame": torch.cat(l2_t).tolist(), "rel_h1_per_frame": torch.cat(h1_t).tolist(),
        "error_spectrum": (err_spec / batches).tolist(),
        "truth_spectrum": (true_spec / batches).tolist(),
    }


def refine_model(
    model: SFNO, ds: NS2DDataset, refiner: SpectralRefiner, *, norm: str = "h-1",
    windows: Sequence[int] | None = None, device: str | torch.device = "cpu",
) -> dict[str, object]:
    """Spectral-Refiner on test windows; the truth is used only to report the true error.

    Args:
        model: the trained SFNO (left unchanged: the refiner fine-tunes a copy).
        ds: the windows, such as ``NSData(path).dataset("test")``.
        refiner: the :class:`~sciml.operators.SpectralRefiner` (steps, learning rate).
        norm: ``"h-1"`` (the paper's) or ``"l2"``: the spatial norm of the residual.
        windows: indices into ``ds`` (default all; negative ones count from the end).
        device: where to refine.

    Returns a dict with per-window lists: ``rel_l2_before/after`` (true relative L2 of the
    physical vorticity), ``residual_before/after`` (the refined norm) and
    ``residual_h-1_before/after`` (the H^-1 residual, whichever norm was refined), plus
    ``truth_residual_h-1`` (the residual of the solver data itself: the floor) and the
    per-step history.
    """
    _check_model_and_windows(model, ds, SFNO)
    check_instance("refiner", refiner, SpectralRefiner,
                   hint="such as SpectralRefiner(steps=100, lr=1e-3)")
    check_choice("norm", norm, ("h-1", "l2"))
    device = check_device(device, "device", resolve=True)
    if windows is None:
        idx = list(range(len(ds)))
    else:
        idx = [i % len(ds) for i in check_indices("windows", windows, len(ds),
                                                  what="windows in ds")]
    items = [ds[i] for i in idx]
    x = torch.stack([a for a, _ in items])
    y = torch.stack([b for _, b in items])
    dtype = next(model.parameters()).dtype
    ns = ds.equation(dtype=dtype, device=device)
    kw = {"mean": ds.mean if ds.normalize else 0.0, "std": ds.std if ds.normalize else 1.0}
    loss = NSResidualLoss(ns, ds.frame_dt, s=-1.0 if norm == "h-1" else 0.0, **kw)
    h_1 = NSResidualLoss(ns, ds.frame_dt, s=-1.0, **kw)
    result: RefineResult = refiner(model.to(device), x.to(device), loss)

    def true_err(p: torch.Tensor) -> list[float]:
        return relative_lp(ds.denormalize(p.cpu().double()), ds.denormalize(y.double())).tolist()

    with torch.no_grad():
        return {
            "norm": norm, "windows": idx,
            "rel_l2_before": true_err(result.initial), "rel_l2_after": true_err(result.prediction),
            "residual_before": result.residual_before.tolist(),
            "residual_after": result.residual_after.tolist(),
            "residual_h-1_before": h_1.per_sample(result.initial).tolist(),
            "residual_h-1_after": h_1.per_sample(result.prediction).tolist(),
            "truth_residual_h-1": h_1.per_sample(y.to(device, dtype)).tolist(),
            "history": result.history.T.tolist(),
        }


def summary(rows: dict[str, object]) -> dict[str, float]:
    """Means of the per-window lists of :func:`refine_model` (``nan`` for empty ones)."""
    out = {}
    for k, v in rows.items():
        if isinstance(v, list) and v and all(isinstance(e, float) for e in v):
            out[k] = float(np.mean(v))
    return out
