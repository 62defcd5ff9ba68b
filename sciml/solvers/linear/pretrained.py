"""The pretrained DCDM networks shipped with sciml, for :func:`~sciml.solvers.linear.dcdm`.

``weights/dcdm_2d.pt`` and ``weights/dcdm_3d.pt`` beside this module hold a
:class:`~sciml.operators.DCDMNet` for 2D and 3D grids, trained by ``sciml train dcdm``
with the settings stored in each file. :func:`load_pretrained` reads one of them (or a
file that ``sciml train dcdm --out DIR`` wrote), refusing foreign pickles and checking
the stored per-tensor checksums.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from ...operators.dcdm import DCDMNet

__all__ = ["WEIGHTS", "load_pretrained"]

#: The directory of the shipped ``dcdm_<dim>d.pt`` files.
WEIGHTS = Path(__file__).resolve().parent / "weights"


def load_pretrained(dim: int, *, path: str | os.PathLike | None = None,
                    device: torch.device | str | None = None) -> DCDMNet:
    """The shipped DCDM network for ``dim``-dimensional grids (eval mode, float32), or the
    one at ``path`` (the ``dcdm_<dim>d.pt`` that ``sciml train dcdm --out DIR`` writes).

    The shipped networks were produced by ``sciml train dcdm`` with the settings stored
    beside the weights: ``torch.load(path, map_location="cpu", weights_only=True)["settings"]``
    (``sciml train dcdm --help`` shows the defaults they started from).

    Args:
        dim: 2 or 3, the dimension of the grids the network preconditions.
        path: a weights file to read instead of the shipped one.
        device: where to put the network (default the CPU); the file is read on the CPU
            whatever device wrote it.

    Returns:
        The :class:`~sciml.operators.DCDMNet`, in eval mode, on ``device``.

    Raises:
        FileNotFoundError: no file.
        ValueError: ``dim`` is not 2 or 3; the file is not a sciml weights file (a foreign
            pickle is refused without running it), is corrupt (a checksum differs), holds
            weights that are not finite, or holds a network of another dimension.
    """
    from ...operators.dcdm import DCDMNet

    return load_network(dim, path, device, make=DCDMNet, stem="dcdm", command="dcdm")


def load_network(dim: int, path: str | os.PathLike | None, device: object, *, make: type,
                 stem: str, command: str):
    """``make`` rebuilt from ``path`` (default the shipped ``weights/<stem>_<dim>d.pt``),
    checked to be ``dim``-dimensional, in eval mode on ``device``: the loader behind
    :func:`load_pretrained` and :func:`~sciml.solvers.linear.load_learned_multigrid`."""
    from ..._weights import build, load_weights

    if isinstance(dim, bool) or not isinstance(dim, int) or dim not in (2, 3):
        raise ValueError(f"dim must be 2 or 3, got {dim!r}")
    dev = _device(device)  # a bad device is refused before the file is read
    fix = f"train one with `sciml train {command} --dim {dim} --out DIR`"
    name = f"{stem}_{dim}d.pt"
    if path is None:
        path = WEIGHTS / name
        if not path.exists():
            raise FileNotFoundError(f"no pretrained {dim}D {make.__name__} weights at "
                                    f"{path}; {fix}")
        fix = f"reinstall sciml, or {fix} and pass path=DIR/{name}"
    else:
        fix = f"pass the {name} that `sciml train {command}` wrote, or {fix}"
    path = Path(path)
    blob = load_weights(path, keys=("config", "state"), fix=fix)
    net = build(path, make, blob["config"], blob["state"], fix)
    if net.dim != dim:
        raise ValueError(f"{path} holds a {net.dim}D network, not {dim}D; pass "
                         f"dim={net.dim} or the {name} file")
    return net.to(dev).eval()


def _device(device: object) -> torch.device:
    """``device`` as a torch.device (None: the CPU), or a ValueError naming it."""
    if device is None:
        return torch.device("cpu")
    try:
        return torch.device(device)
    except (TypeError, RuntimeError) as e:
        raise ValueError(f"device must be a torch.device or a string like 'cpu' or "
                         f"'cuda:0', got {device!r} ({e})") from None
