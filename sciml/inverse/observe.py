"""Observation operators: what of a field (or of a trajectory) the data see.

An observation operator ``O`` maps a batch of fields ``u`` of shape ``(B, *shape)`` (or
trajectories ``(B, T, *shape)`` when ``frames`` is set) to what is measured, and it is
differentiable, so any forward map composed with it can be inverted by gradients. The
data model is ``d = O(u) + eta``, ``eta ~ N(0, noise_std^2 I)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch

from .._validation import as_tensor, check_int_tuple, check_real, check_tensor

__all__ = ["FullObservation", "Observation", "PointObservation", "random_points"]


@runtime_checkable
class Observation(Protocol):
    """Anything with a ``noise_std`` and a differentiable ``__call__(u) -> observations``."""

    noise_std: float

    def __call__(self, u: torch.Tensor) -> torch.Tensor: ...


def _grid_shape(shape: object) -> tuple[int, ...]:
    if isinstance(shape, int) and not isinstance(shape, bool):
        raise TypeError(f"shape must be a sequence of grid sizes, got the int {shape}; "
                        f"write ({shape},) for one axis")
    out = check_int_tuple("shape", shape, minimum=1)
    if not out:
        raise ValueError("shape must name at least one grid axis, got ()")
    return out


def _frames(frames: object) -> tuple[int, ...] | None:
    if frames is None:
        return None
    out = check_int_tuple("frames", frames, minimum=0)
    if not out or len(set(out)) != len(out):
        raise ValueError(f"frames must be distinct time indices (at least one), got {out}")
    return out


def _select(name: str, u: object, shape: tuple[int, ...],
            frames: tuple[int, ...] | None) -> torch.Tensor:
    """Check ``u`` against the grid and pick the observed frames: ``(B, [F,] *shape)``."""
    d = len(shape)
    extra = 2 if frames is not None else 1
    u = check_tensor(name, as_tensor(u), real=True)
    if u.ndim != d + extra or tuple(u.shape[-d:]) != shape:
        want = "(B, T, " if frames is not None else "(B, "
        raise ValueError(f"{name} has shape {tuple(u.shape)} but the observation expects "
                         f"{want}{', '.join(map(str, shape))}); add a batch axis with "
                         f"{name}[None] if needed")
    if frames is not None:
        T = u.shape[1]
        if max(frames) >= T:
            raise ValueError(f"frames {frames} reach past the trajectory's {T} time samples")
        u = u[:, list(frames)]
    return u


def _add_noise(noise_std: float, values: torch.Tensor,
               generator: torch.Generator | None) -> torch.Tensor:
    values = check_tensor("values", values, real=True)
    eta = torch.randn(values.shape, generator=generator, dtype=values.dtype,
                      device=values.device if generator is None else generator.device)
    return values + noise_std * eta.to(values.device)


@dataclass(frozen=True)
class PointObservation:
    """Point values of a field on a grid, ``O(u) = u[indices]``.

    .. math:: (O u)_j = u(x_{i_j}), \\quad j = 1..m

    Attributes:
        indices: flat (row-major) indices into the grid, distinct; a sequence of ints or
            an integer tensor.
        shape: the grid shape ``(n_1, ..., n_d)`` of the observed fields.
        noise_std: the standard deviation ``sigma`` of the additive Gaussian noise (used
            by :meth:`add_noise` and as the default :class:`~sciml.inverse.L2Misfit`).
        frames: ``None`` for fields ``(B, *shape)``; a tuple of time indices for
            trajectories ``(B, T, *shape)``, each listed frame observed at the same points.

    Call: ``O(u)`` returns ``(B, m)`` values (``(B, F * m)`` with ``F`` frames, frame
    by frame); differentiable in ``u``.
    """

    indices: tuple[int, ...]
    shape: tuple[int, ...]
    noise_std: float = 0.0
    frames: tuple[int, ...] | None = None
    _index: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        shape = _grid_shape(self.shape)
        idx = as_tensor(self.indices, integers=True)  # a numpy array: an integer tensor
        if isinstance(idx, torch.Tensor):
            if idx.is_floating_point() or idx.is_complex() or idx.dtype is torch.bool:
                raise TypeError(f"indices must be integer flat indices, got dtype {idx.dtype};"
                                " for a boolean mask use PointObservation.from_mask(mask)")
            idx = idx.flatten().tolist()
        idx = check_int_tuple("indices", idx)
        n = math.prod(shape)
        if not idx:
            raise ValueError("indices is empty; observe at least one point")
        bad = [i for i in idx if not 0 <= i < n]
        if bad:
            raise ValueError(f"indices {bad[:5]} fall outside the grid of {n} points "
                             f"(shape {shape}); flat indices run from 0 to {n - 1}")
        if len(set(idx)) != len(idx):
            raise ValueError("indices holds repeated points; each point is observed once "
                             "(average repeated measurements before passing them)")
        object.__setattr__(self, "indices", idx)
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "noise_std", check_real("noise_std", self.noise_std,
                                                         minimum=0.0))
        object.__setattr__(self, "frames", _frames(self.frames))

    @classmethod
    def from_mask(cls, mask: torch.Tensor, noise_std: float = 0.0,
                  frames: Sequence[int] | None = None) -> PointObservation:
        """The points where the boolean ``mask`` (of the grid's shape) is True."""
        mask = check_tensor("mask", mask)
        if mask.dtype is not torch.bool:
            raise TypeError(f"mask must be a bool tensor, got dtype {mask.dtype}; "
                            "use mask != 0")
        flat = torch.nonzero(mask.flatten()).flatten()
        return cls(flat, tuple(mask.shape), noise_std, frames)  # type: ignore[arg-type]

    @property
    def num_obs(self) -> int:
        """Values per field (or trajectory): ``m`` times the number of frames."""
        return len(self.indices) * (len(self.frames) if self.frames else 1)

    def mask(self) -> torch.Tensor:
        """The observed points as a boolean tensor of the grid's shape."""
        m = torch.zeros(math.prod(self.shape), dtype=torch.bool)
        m[list(self.indices)] = True
        return m.reshape(self.shape)

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        u = _select("u", u, self.shape, self.frames)
        idx = self._index.get(u.device)
        if idx is None:
            idx = torch.tensor(self.indices, dtype=torch.long, device=u.device)
            self._index[u.device] = idx
        flat = u.reshape(*u.shape[: u.ndim - len(self.shape)], -1).index_select(-1, idx)
        return flat.reshape(u.shape[0], -1)

    def add_noise(self, values: torch.Tensor, *,
                  generator: torch.Generator | None = None) -> torch.Tensor:
        """``values + noise_std * eta`` with ``eta ~ N(0, I)`` drawn from ``generator``."""
        return _add_noise(self.noise_std, values, generator)


@dataclass(frozen=True)
class FullObservation:
    """The whole field (or the listed frames of a trajectory), ``O(u) = u``.

    For full-field data, e.g. with :class:`~sciml.inverse.SobolevMisfit`. ``O(u)`` keeps
    the grid axes: ``(B, *shape)``, or ``(B, F, *shape)`` with ``frames``.
    """

    shape: tuple[int, ...]
    noise_std: float = 0.0
    frames: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", _grid_shape(self.shape))
        object.__setattr__(self, "noise_std", check_real("noise_std", self.noise_std,
                                                         minimum=0.0))
        object.__setattr__(self, "frames", _frames(self.frames))

    @property
    def num_obs(self) -> int:
        return math.prod(self.shape) * (len(self.frames) if self.frames else 1)

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        return _select("u", u, self.shape, self.frames)

    def add_noise(self, values: torch.Tensor, *,
                  generator: torch.Generator | None = None) -> torch.Tensor:
        """``values + noise_std * eta`` with ``eta ~ N(0, I)`` drawn from ``generator``."""
        return _add_noise(self.noise_std, values, generator)


def random_points(
    shape: Sequence[int],
    fraction: float,
    *,
    noise_std: float = 0.0,
    frames: Sequence[int] | None = None,
    generator: torch.Generator | None = None,
) -> PointObservation:
    """Observe ``max(1, round(fraction * N))`` distinct grid points drawn uniformly.

    Args:
        shape: the grid shape.
        fraction: the observed fraction of the ``N`` grid points, in ``(0, 1]``.
        noise_std: the noise standard deviation of the observation.
        frames: observed time indices for trajectories (see :class:`PointObservation`).
        generator: a CPU ``torch.Generator`` for reproducible draws.

    Returns:
        A :class:`PointObservation` with sorted indices.
    """
    shape = _grid_shape(shape)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not (
        0 < fraction <= 1
    ):
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    n = math.prod(shape)
    m = max(1, round(fraction * n))
    perm = torch.randperm(n, generator=generator)[:m]
    return PointObservation(tuple(sorted(perm.tolist())), shape, noise_std, frames)
