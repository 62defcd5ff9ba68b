"""Scenes, coefficient fields and right-hand sides for :mod:`sciml.pdes.poisson`.

The geometries DCDM was trained and tested on (:func:`fluid_proxy`, :func:`random_obstacles`,
:func:`box_scene`), media for variable-coefficient systems (:func:`random_coefficients`,
:func:`layered_coefficients`), and right-hand sides (:func:`divergence_rhs` of a random
smooth face velocity, :func:`random_rhs`). All are re-exported by
:mod:`sciml.pdes.poisson` and :mod:`sciml.pdes`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .._validation import (
    check_int,
    check_int_tuple,
    check_positive,
    check_real,
)
from ..spectral import wavenumbers
from .poisson import (
    AIR,
    FLUID,
    SOLID,
    PoissonSystem,
    _face_shape,
    _require_system,
    _resolve_boundary,
    divergence,
)

__all__ = [
    "box_scene",
    "divergence_rhs",
    "fluid_proxy",
    "layered_coefficients",
    "random_coefficients",
    "random_face_velocity",
    "random_obstacles",
    "random_rhs",
]

# ---------------------------------------------------------------------------- scenes


def _check_shape(N: object, d: object) -> tuple[int, ...]:
    """The grid shape from ``N`` (an int, with ``d``: ``(N,)*d``; or a shape tuple)."""
    if isinstance(N, (tuple, list, torch.Size)):
        shape = check_int_tuple("N", tuple(N), minimum=2)
        if len(shape) not in (2, 3):
            raise ValueError(f"N as a grid shape must have 2 or 3 sides, got {shape}")
        if d is not None and d != len(shape):
            raise ValueError(f"d={d!r} but the shape N={shape} has {len(shape)} sides; "
                             f"leave d out when N is a shape")
        return shape
    N = check_int("N", N, minimum=2)
    if d is None:
        d = 3
    if d not in (2, 3) or isinstance(d, bool):
        raise ValueError(f"d must be 2 or 3, got {d!r}")
    return (N,) * int(d)


def _check_coefficient_shape(shape: object) -> tuple[int, ...]:
    if isinstance(shape, torch.Size):
        shape = tuple(shape)
    if not isinstance(shape, (tuple, list)):
        raise TypeError(f"shape must be a grid shape, a tuple of 2 or 3 ints (e.g. "
                        f"system.shape), got {shape!r}")
    shape = check_int_tuple("shape", tuple(shape), minimum=2)
    if len(shape) not in (2, 3):
        raise ValueError(f"shape must have 2 or 3 sides, got {shape}")
    return shape


def _centres(shape: tuple[int, ...]) -> list[Tensor]:
    """Cell-centre coordinates, one broadcastable tensor per axis, in units of the
    shortest side (so the box is ``[0, N_a / min(N)]`` along axis ``a``)."""
    d, m = len(shape), min(shape)
    return [((torch.arange(n, dtype=torch.float64) + 0.5) / m).reshape(
        [n if b == a else 1 for b in range(d)]) for a, n in enumerate(shape)]


def _rng(generator: torch.Generator | None, seed: int | None) -> torch.Generator | None:
    if generator is not None and seed is not None:
        raise ValueError("pass a generator or a seed, not both")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if seed is not None:
        return torch.Generator().manual_seed(check_int("seed", seed))
    return generator


def box_scene(N: int | Sequence[int], d: int | None = None, open_top: bool | None = None, *,
              dirichlet_walls: bool | None = None,
              boundary: str | Sequence[str | tuple[str, str]] | None = None,
              coefficients: Tensor | None = None) -> PoissonSystem:
    """An all-fluid box.

    Args:
        N: cells per side (with ``d``: the grid ``(N,)*d``, ``d`` 3 by default) or the
            grid shape ``(N0, N1[, N2])``.
        open_top, dirichlet_walls, boundary, coefficients: as in :class:`PoissonSystem`
            (default: Neumann walls and an open top). ``open_top=False`` alone (or
            ``boundary="neumann"``) gives the pure Neumann problem, whose null space is
            the constant.
    """
    shape = _check_shape(N, d)
    return PoissonSystem(torch.full(shape, FLUID, dtype=torch.int8), open_top,
                         dirichlet_walls, boundary=boundary, coefficients=coefficients)


def fluid_proxy(N: int | Sequence[int], d: int | None = None, radius: float = 0.2,
                center: tuple[float, ...] | None = None) -> PoissonSystem:
    """DCDM's fluid-proxy scene: a solid ball (disc in 2D) in a box with Neumann walls on
    the sides and bottom and an open (Dirichlet) top.

    Args:
        N, d: cells per side and dimension (grid ``(N,)*d``, ``d`` 3 by default), or
            ``N`` the grid shape ``(N0, N1[, N2])``.
        radius: the ball's radius as a fraction of the shortest side (cells with centres
            within ``radius * min(shape)`` cells of the centre are SOLID).
        center: the ball's centre as fractions of each side, ``d`` numbers in ``[0, 1]``
            (default the middle).

    Fluid pockets the ball cuts off from the top are filled with SOLID
    (:meth:`PoissonSystem.sealed`), so ``A`` is definite.
    """
    shape = _check_shape(N, d)
    d = len(shape)
    radius = check_positive("radius", radius, fix="a fraction of the shortest side")
    center = (0.5,) * d if center is None else tuple(float(c) for c in center)
    if len(center) != d or not all(0.0 <= c <= 1.0 for c in center):
        raise ValueError(f"center must be {d} numbers in [0, 1], got {center!r}")
    m = min(shape)
    r2 = sum((x - c * (n / m)) ** 2 for x, c, n in zip(_centres(shape), center, shape))
    cells = torch.where(r2 <= radius**2, SOLID, FLUID).to(torch.int8)
    if not bool((cells == FLUID).any()):
        raise ValueError(f"a ball of radius {radius} fills the grid; use a smaller radius")
    return PoissonSystem(cells, open_top=True).sealed()


def random_obstacles(N: int | Sequence[int], d: int | None = None, n_obstacles: int = 6, *,
                     air_layer: float = 0.5, open_top: bool | None = None,
                     boundary: str | Sequence[str | tuple[str, str]] | None = None,
                     generator: torch.Generator | None = None,
                     seed: int | None = None) -> PoissonSystem:
    """Random solid balls and boxes in a box, sometimes under a layer of AIR.

    Each obstacle is a ball (radius) or an axis-aligned box (half-sides) with sizes
    uniform in ``[0.05, 0.2]`` of the shortest side and a uniform centre. With
    probability ``air_layer`` (always when no side of the domain is Dirichlet) the top
    ``1 .. max(1, N_last // 8)`` cell layers along the last axis become AIR. Fluid
    pockets cut off from every Dirichlet face are filled with SOLID, so ``A`` is always
    definite.

    Args:
        N, d: cells per side and dimension (grid ``(N,)*d``, ``d`` 3 by default), or
            ``N`` the grid shape ``(N0, N1[, N2])``.
        n_obstacles: how many obstacles (they may overlap).
        air_layer: probability of the air layer.
        open_top, boundary: as in :class:`PoissonSystem` (default: an open top).
        generator, seed: the randomness (a CPU generator, or a seed for a new one; the
            global generator when neither is given).

    Raises:
        ValueError: the obstacles leave no fluid connected to a Dirichlet face.
    """
    shape = _check_shape(N, d)
    d = len(shape)
    n_obstacles = check_int("n_obstacles", n_obstacles, minimum=0)
    air_layer = check_real("air_layer", air_layer, minimum=0.0,
                           fix="a probability in [0, 1]")
    if air_layer > 1.0:
        raise ValueError(f"air_layer is a probability in [0, 1], got {air_layer!r}")
    bnd = _resolve_boundary(open_top, None, boundary, d)
    g = _rng(generator, seed)
    x = _centres(shape)
    extent = [n / min(shape) for n in shape]
    solid = torch.zeros(shape, dtype=torch.bool)
    for _ in range(n_obstacles):
        u = torch.rand(1 + 2 * d, generator=g, dtype=torch.float64).tolist()
        centre = [c * e for c, e in zip(u[1:1 + d], extent)]
        size = [0.05 + 0.15 * s for s in u[1 + d:]]
        if u[0] < 0.5:
            solid |= sum((xa - c) ** 2 for xa, c in zip(x, centre)) <= size[0] ** 2
        else:
            inside = torch.ones(shape, dtype=torch.bool)
            for xa, c, s in zip(x, centre, size):
                inside &= (xa - c).abs() <= s
            solid |= inside
    cells = torch.where(solid, SOLID, FLUID).to(torch.int8)
    u = torch.rand(2, generator=g, dtype=torch.float64).tolist()
    closed = all(k == "neumann" for side in bnd for k in side)
    if closed or u[0] < air_layer:
        top = shape[-1]
        cells[..., top - 1 - int(u[1] * max(1, top // 8)):] = AIR
    if not bool((cells == FLUID).any()):
        raise ValueError(f"{n_obstacles} obstacles left no fluid; use fewer obstacles")
    return PoissonSystem(cells, boundary=bnd).sealed()


def random_coefficients(shape: Sequence[int], contrast: float = 1e3, *, smooth: float = 2.0,
                        generator: torch.Generator | None = None,
                        seed: int | None = None) -> Tensor:
    """A random smooth conductivity field for :class:`PoissonSystem` (``coefficients``).

    ``k = contrast ** u`` with ``u`` white noise through a periodic Gaussian filter of
    ``smooth`` cells (0: white noise), rescaled to span ``[0, 1]`` exactly: a log-normal
    like medium with ``min k = 1`` and ``max k = contrast``.

    Args:
        shape: the grid shape ``(N0, N1[, N2])`` (e.g. ``system.shape``).
        contrast: ``max k / min k``, ``>= 1`` (1: uniform).
        smooth: correlation length in cells, ``>= 0``.
        generator, seed: the randomness (the global generator when neither is given).

    Returns:
        float64 tensor of ``shape`` (on the generator's device). Use it as
        ``system.with_coefficients(random_coefficients(system.shape, 1e4, seed=0))``.
    """
    shape = _check_coefficient_shape(shape)
    contrast = check_real("contrast", contrast, minimum=1.0, fix="contrast = max k / min k")
    smooth = check_positive("smooth", smooth, allow_zero=True, fix="a length in cells")
    g = _rng(generator, seed)
    device = g.device if g is not None else torch.device("cpu")
    w = torch.randn(1, *shape, generator=g, dtype=torch.float64, device=device)
    if smooth > 0:
        w = _smooth(w, smooth)
    lo, hi = w.min(), w.max()
    u = (w - lo) / torch.where(hi > lo, hi - lo, torch.ones_like(hi))
    return torch.pow(torch.tensor(contrast, dtype=torch.float64, device=device), u[0])


def layered_coefficients(shape: Sequence[int], contrast: float = 1e3, layers: int = 4, *,
                         axis: int = -1) -> Tensor:
    """A layered medium for :class:`PoissonSystem` (``coefficients``): ``layers`` slabs of
    (nearly) equal thickness across ``axis``, alternately ``k = 1`` (the first) and
    ``k = contrast``; the classic test of a solver's robustness to coefficient jumps.

    Args:
        shape: the grid shape ``(N0, N1[, N2])``.
        contrast: the conductivity of every other layer, ``> 0`` (``< 1`` too).
        layers: how many slabs, ``1 <= layers <= shape[axis]``.
        axis: the axis the slabs stack along (default the last).

    Returns:
        float64 tensor of ``shape`` (CPU).
    """
    shape = _check_coefficient_shape(shape)
    contrast = check_positive("contrast", contrast)
    axis = check_int("axis", axis)
    if not -len(shape) <= axis < len(shape):
        raise ValueError(f"axis must be in [{-len(shape)}, {len(shape) - 1}], got {axis}")
    axis %= len(shape)
    m = shape[axis]
    layers = check_int("layers", layers, minimum=1)
    if layers > m:
        raise ValueError(f"layers must be <= shape[axis] = {m} (one cell each), got {layers}")
    index = torch.arange(m) * layers // m
    k = torch.where(index % 2 == 0, 1.0, contrast).to(torch.float64)
    view = [m if b == axis else 1 for b in range(len(shape))]
    return k.reshape(view).expand(shape).contiguous()



def _smooth(w: Tensor, sigma: float) -> Tensor:
    """Periodic Gaussian filter (standard deviation ``sigma`` cells) over all but dim 0."""
    dims = tuple(range(1, w.ndim))
    grid = tuple(w.shape[1:])
    kernel = torch.ones((), dtype=w.dtype, device=w.device)
    # angular wavenumbers per cell (a box of side m cells), rfftn layout
    for k in wavenumbers(grid, grid, device=w.device, dtype=w.dtype):
        kernel = kernel * torch.exp(-0.5 * (sigma * k) ** 2)
    return torch.fft.irfftn(torch.fft.rfftn(w, dim=dims) * kernel, s=w.shape[1:], dim=dims)


def random_face_velocity(system: PoissonSystem, batch: int = 1, *, smooth: float = 2.0,
                         generator: torch.Generator | None = None,
                         seed: int | None = None) -> tuple[Tensor, ...]:
    """A random smooth velocity on the faces: per axis ``(batch, *face_a)`` float64 (on the
    generator's device), white noise through a periodic Gaussian filter of ``smooth``
    cells (0: white noise), unit RMS per sample and axis, then zero on faces that carry no
    flow (SOLID sides, Neumann walls, faces with no FLUID side)."""
    _require_system(system)
    batch = check_int("batch", batch, minimum=1)
    if not (isinstance(smooth, (int, float)) and 0 <= smooth < math.inf):
        raise ValueError(f"smooth is a length in cells, >= 0, got {smooth!r}")
    g = _rng(generator, seed)
    device = g.device if g is not None else torch.device("cpu")
    out = []
    for a, face in enumerate(system._open_faces):
        w = torch.randn(batch, *_face_shape(system, a), generator=g, dtype=torch.float64,
                        device=device)
        if smooth > 0:
            w = _smooth(w, float(smooth))
        w = w / w.std(dim=tuple(range(1, w.ndim)), keepdim=True).clamp_min(1e-300)
        out.append(w * face.to(device))
    return tuple(out)


def divergence_rhs(system: PoissonSystem, batch: int = 1, *,
                   generator: torch.Generator | None = None, seed: int | None = None,
                   smooth: float = 2.0) -> Tensor:
    """Right-hand sides of the pressure projection: ``b = divergence(u*)``, ``(batch, n)``
    float64, for ``u*`` from :func:`random_face_velocity`; zero on non-fluid cells.

    Solving ``A p = b`` and setting ``u = u* + g * gradient(p)`` (``g`` the face
    conductances, :meth:`PoissonSystem.face_conductances`; 1 without coefficients) makes
    ``u`` divergence-free on the fluid cells (``p`` is minus the physical pressure times
    ``dt``, ``k = 1 / rho``; ``u*`` is symmetric in law, so the sign carries no
    information). No flow crosses SOLID faces or
    Neumann walls, so ``b`` already sums to 0 over floating regions; the null-space
    component is projected out anyway (:meth:`PoissonSystem.project_range`) to remove
    round-off.
    """
    _require_system(system)
    u = random_face_velocity(system, batch, smooth=smooth, generator=generator, seed=seed)
    return system.project_range(divergence(system, u))


def random_rhs(system: PoissonSystem, batch: int = 1, *,
               generator: torch.Generator | None = None, seed: int | None = None) -> Tensor:
    """White-noise right-hand sides ``(batch, n)`` float64 on the fluid cells (zero
    elsewhere), with the null-space component projected out."""
    _require_system(system)
    batch = check_int("batch", batch, minimum=1)
    g = _rng(generator, seed)
    device = g.device if g is not None else torch.device("cpu")
    b = torch.randn(batch, system.n, generator=g, dtype=torch.float64, device=device)
    b = torch.where(system.fluid_mask.reshape(-1).to(device), b, 0)
    return system.project_range(b)
