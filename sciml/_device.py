"""Device names checked against this machine, with messages that say what to use instead.

One rule decides where a process runs (:func:`check_device` with ``resolve=True``): the
``sciml`` command line, the :class:`~sciml.train.Trainer`'s default and the data writers
all follow it, so that a job launched by ``torchrun`` puts process ``LOCAL_RANK`` on GPU
``LOCAL_RANK`` whichever entry point it went through.
"""

from __future__ import annotations

import os

import torch

#: the device value that picks CUDA when this machine has it (the CPU otherwise)
AUTO = "auto"


def torchrun_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 when not launched by torchrun)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def torchrun_local_rank() -> int:
    """``LOCAL_RANK`` from the environment: this process's place on its node (0 if unset)."""
    try:
        return int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        return 0


def check_device(device: object, name: str = "device", *, fix: str | None = None,
                 resolve: bool = False) -> torch.device:
    """Return ``torch.device(device)`` if this machine has it, else raise a ValueError.

    Accepts ``"cpu"``, ``"cuda"``, ``"cuda:N"`` (``N`` below the number of visible GPUs),
    ``"mps"`` where available, or a :class:`torch.device` of those.

    With ``resolve=True`` the result is the device *this process* should run on, by one
    rule shared by the command line, the Trainer and the data writers:

    * ``None``: the CPU, or ``cuda:LOCAL_RANK`` under torchrun (``WORLD_SIZE > 1``) on a
      CUDA machine (the Trainer's default);
    * ``"auto"``: CUDA when this machine has it (``cuda:LOCAL_RANK`` under torchrun),
      else the CPU;
    * ``"cuda"`` (no index): ``cuda:LOCAL_RANK`` under torchrun, else the current GPU
      (``cuda:0`` unless :func:`torch.cuda.set_device` said otherwise);
    * ``"cuda:N"`` under torchrun must be ``cuda:LOCAL_RANK``: any other index would put
      several processes on one GPU, and is refused with the fix (pass ``"cuda"``);
    * anything else as without ``resolve``.

    Args:
        device: the device (a string or a :class:`torch.device`; with ``resolve`` also
            ``None`` or ``"auto"``).
        name: the argument's name, for the message ("": the value alone).
        fix: what to use instead, for the message (default ``{name}='cpu'``).
        resolve: apply the rule above (and return an indexed CUDA device).

    Returns:
        The checked :class:`torch.device`.

    Raises:
        TypeError: ``device`` is neither a string nor a :class:`torch.device`.
        ValueError: not a device name, or a device this machine does not have (no CUDA,
            or fewer GPUs than the index asks for), or (``resolve``) a GPU other than
            ``cuda:LOCAL_RANK`` under torchrun.
    """
    fix = fix or f"{name}='cpu'"
    label = f"{name} {str(device)!r}" if name else repr(str(device))
    if resolve and (device is None or (isinstance(device, str) and device == AUTO)):
        return _default(device is None, name, fix)
    if isinstance(device, torch.device):
        dev = device
    elif isinstance(device, str):
        try:
            dev = torch.device(device)
        except RuntimeError:
            more = ", auto" if resolve else ""
            raise ValueError(
                f"{label} is not a device: use cpu, cuda or cuda:N (N = 0, 1, ...){more}"
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
        if resolve:
            dev = _this_process_gpu(dev, label)
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


def _default(none: bool, name: str, fix: str) -> torch.device:
    """The device of ``None`` (CPU unless torchrun on CUDA) or ``"auto"`` (CUDA if any)."""
    use_cuda = torch.cuda.is_available() and (not none or torchrun_world_size() > 1)
    if not use_cuda:
        return torch.device("cpu")
    return check_device("cuda", name, fix=fix, resolve=True)


def _this_process_gpu(dev: torch.device, label: str) -> torch.device:
    """``dev`` (type cuda) made this process's GPU under torchrun; indexed either way."""
    world = torchrun_world_size()
    if world <= 1:
        return dev if dev.index is not None else torch.device("cuda", torch.cuda.current_device())
    local = torchrun_local_rank()
    if dev.index is None:
        n = torch.cuda.device_count()
        if local >= n:
            raise ValueError(
                f"{label} under torchrun: this process has LOCAL_RANK={local} but the machine "
                f"has {n} CUDA device(s); launch at most {n} processes per node "
                f"(torchrun --nproc_per_node {n}), one per GPU"
            )
        return torch.device("cuda", local)
    if dev.index != local:
        raise ValueError(
            f"{label} under torchrun (WORLD_SIZE={world}): this process has "
            f"LOCAL_RANK={local}, so it must run on cuda:{local}, and a fixed index would "
            f"put several processes on one GPU; pass device 'cuda' without an index "
            f"(--device cuda on the command line): every process then takes cuda:LOCAL_RANK"
        )
    return dev
