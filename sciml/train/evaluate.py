"""Per-sample evaluation of a trained model: one value per item and metric, not a mean."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from .._device import check_device
from .._validation import check_int

__all__ = ["evaluate_samples"]


@torch.no_grad()
def evaluate_samples(
    model: nn.Module,
    data: Dataset,
    metrics: Mapping[str, Callable[[Tensor, Tensor], Tensor]],
    *,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    transform: Callable[[Tensor], Tensor] | None = None,
) -> dict[str, Tensor]:
    """Each metric on each item of ``data``: the errors per sample behind a mean.

    The model runs in eval mode on ``device`` over batches of ``(x, y)`` items; each
    ``metric(prediction, target)`` must return one value per sample, shape ``(B,)``.
    ``transform`` is applied to prediction and target first (such as
    :meth:`sciml.data.ArrayDataset.denormalize`, to measure errors in the data's units).

    Args:
        model: the trained module (its weights' dtype decides the inputs' dtype).
        data: a map-style data set of ``(input, target)`` tensor pairs.
        metrics: by name, e.g. ``{"rel_l2": sciml.operators.relative_lp}``.
        batch_size: items per forward pass.
        device: where to run (default: where the model's parameters are).
        transform: applied to predictions and targets before the metrics (on ``device``).

    Returns:
        ``{name: tensor (len(data),)}`` float64 on the CPU, in the order of ``data``.

    Raises:
        TypeError, ValueError: a bad argument (named), an empty data set, or a metric that
            does not return one value per sample.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not hasattr(data, "__getitem__") or not hasattr(data, "__len__"):
        raise TypeError(f"data must be a map-style Dataset of (input, target) pairs, got "
                        f"{type(data).__name__}")
    if len(data) == 0:
        raise ValueError("data holds no items; evaluate on a non-empty data set")
    if not isinstance(metrics, Mapping) or not metrics:
        raise TypeError("metrics must be a non-empty mapping of names to metric(prediction, "
                        "target) callables, such as {'rel_l2': relative_lp}")
    for name, fn in metrics.items():
        if not isinstance(name, str) or not callable(fn):
            raise TypeError(f"metrics must map names (str) to callables, got {name!r}: {fn!r}")
    if transform is not None and not callable(transform):
        raise TypeError(f"transform must be callable or None, got {transform!r}")
    batch_size = check_int("batch_size", batch_size, minimum=1, fix="such as 8")
    param = next(model.parameters(), None)
    if device is None:
        device = param.device if param is not None else torch.device("cpu")
    else:
        device = check_device(device, "device", resolve=True)
    dtype = param.dtype if param is not None else torch.float32
    was_training = model.training
    model.eval()
    out: dict[str, list[Tensor]] = {name: [] for name in metrics}
    try:
        for i in range(0, len(data), batch_size):
            items = [data[k] for k in range(i, min(len(data), i + batch_size))]
            x = torch.stack([_first(it, 0) for it in items]).to(device, dtype)
            y = torch.stack([_first(it, 1) for it in items]).to(device)
            p = model(x)
            if transform is not None:
                p, y = transform(p), transform(y)
            for name, fn in metrics.items():
                v = torch.as_tensor(fn(p, y))
                if v.shape != (len(items),):
                    raise ValueError(f"metric {name!r} returned shape {tuple(v.shape)} for a "
                                     f"batch of {len(items)}; it must return one value per "
                                     "sample (B,)")
                out[name].append(v.detach().to("cpu", torch.float64))
    finally:
        model.train(was_training)
    return {name: torch.cat(v) for name, v in out.items()}


def _first(item: Any, i: int) -> Tensor:
    if not isinstance(item, (tuple, list)) or len(item) < 2:
        raise TypeError(f"data items must be (input, target) pairs, got {type(item).__name__}")
    v = item[i]
    return v if isinstance(v, Tensor) else torch.as_tensor(v)
