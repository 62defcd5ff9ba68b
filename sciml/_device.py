"""Device names checked against this machine, with messages that say what to use instead."""

from __future__ import annotations

import torch


def check_device(device: object, name: str = "device", *, fix: str | None = None
                 ) -> torch.device:
    """Return ``torch.device(device)`` if this machine has it, else raise a ValueError.

    Accepts ``"cpu"``, ``"cuda"``, ``"cuda:N"`` (``N`` below the number of visible GPUs),
    ``"mps"`` where available, or a :class:`torch.device` of those.

    Args:
        device: the device (a string or a :class:`torch.device`).
        name: the argument's name, for the message ("": the value alone).
        fix: what to use instead, for the message (default ``{name}='cpu'``).

    Raises:
        TypeError: ``device`` is neither a string nor a :class:`torch.device`.
        ValueError: not a device name, or a device this machine does not have (no CUDA,
            or fewer GPUs than the index asks for).
    """
    fix = fix or f"{name}='cpu'"
    label = f"{name} {str(device)!r}" if name else repr(str(device))
    if isinstance(device, torch.device):
        dev = device
    elif isinstance(device, str):
        try:
            dev = torch.device(device)
        except RuntimeError:
            raise ValueError(
                f"{label} is not a device: use cpu, cuda or cuda:N (N = 0, 1, ...)"
            ) from None
    else:
        raise TypeError(f"{name or 'device'} must be a string such as 'cpu' or 'cuda:0', or a "
                        f"torch.device, got {type(device).__name__}")
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = (f"this torch {torch.__version__} is built without CUDA"
                   if torch.version.cuda is None
                   else "no CUDA GPU is visible: check the driver and CUDA_VISIBLE_DEVICES")
            raise ValueError(
                f"{label}: CUDA is not available on this machine ({why}); "
                f"use {fix}"
            )
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise ValueError(
                f"{label}: this machine has {n} CUDA device(s), cuda:0 to "
                f"cuda:{n - 1}; pick one of them, or use {fix}"
            )
        return dev
    if dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError(f"{label}: MPS is not available on this machine; "
                             f"use {fix}")
        return dev
    raise ValueError(f"{label}: sciml runs on cpu or cuda (cuda:N); use {fix}")
