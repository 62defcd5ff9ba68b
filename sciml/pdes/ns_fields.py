"""Initial conditions and forcings for the 2D vorticity equation on a periodic box.

Every field is sampled at ``x_i = i L / n``, ``y_j = j L / n`` with array index
``[..., i, j]`` (first axis x, second axis y), the convention of the whole library.
"""

from __future__ import annotations

import math

import torch

from .._validation import check_int, check_real
from ..spectral import integer_wavenumbers


def _dtype(dtype: torch.dtype) -> torch.dtype:
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    return dtype


def grid_coordinates(
    n: int, length: float = 1.0, *, dtype: torch.dtype = torch.float64, device=None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(n, n)`` coordinate arrays ``x[i, j] = i L / n``, ``y[i, j] = j L / n``."""
    n = check_int("n", n, minimum=2)
    length = check_real("length", length, positive=True)
    s = torch.arange(n, dtype=torch.float64, device=device) * (length / n)
    x, y = torch.meshgrid(s, s, indexing="ij")
    return x.to(_dtype(dtype)), y.to(dtype)


def _integer_k(n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    k = integer_wavenumbers(n, device=device)  # the library's fftn order
    return k[:, None].expand(n, n), k[None, :].expand(n, n)


def _hermitian_noise(batch: int, n: int, generator, device) -> torch.Tensor:
    """Complex white noise with Hermitian symmetry and ``E|xi_k|^2 = 1``."""
    z = torch.randn(batch, n, n, generator=generator, dtype=torch.float64, device=device)
    return torch.fft.fft2(z, norm="ortho")


def gaussian_random_field(
    batch: int,
    n: int,
    *,
    alpha: float = 2.5,
    tau: float = 7.0,
    sigma: float | None = None,
    length: float = 1.0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device=None,
) -> torch.Tensor:
    """Samples of the Gaussian random field ``N(0, sigma^2 (-Lap + tau^2 I)^(-alpha))``.

    The Fourier coefficients (``fft2(w, norm="forward")``) are independent with
    ``E|c_k|^2 = 2 sigma^2 (4 pi^2 |k|^2 / L^2 + tau^2)^(-alpha)`` for ``k != 0`` and the
    mean is zero. ``sigma`` defaults to ``tau^(alpha - 1)`` and the factor 2 is kept, so the
    fields have the statistics of the data generator of Li et al. (FNO, ICLR 2021), whose
    code uses ``sigma = tau^(alpha - 1)`` (the paper prints ``7^(3/2)`` as the covariance
    scale; the code's fields are what the published data hold).

    Returns:
        ``(batch, n, n)`` real tensor.
    """
    batch = check_int("batch", batch, minimum=1)
    n = check_int("n", n, minimum=2)
    alpha = check_real("alpha", alpha, positive=True)
    tau = check_real("tau", tau, positive=True)
    length = check_real("length", length, positive=True)
    sigma = tau ** (alpha - 1.0) if sigma is None else check_real("sigma", sigma, positive=True)
    _dtype(dtype)
    kx, ky = _integer_k(n, device)
    lam = (4 * math.pi**2 * (kx**2 + ky**2) / length**2 + tau**2) ** (-alpha)
    amp = math.sqrt(2.0) * sigma * lam.sqrt()
    amp[0, 0] = 0.0
    c = _hermitian_noise(batch, n, generator, device) * amp
    return torch.fft.ifft2(c, norm="forward").real.to(dtype)


def mcwilliams_vorticity(
    batch: int,
    n: int,
    *,
    peak_wavenumber: float = 4.0,
    max_velocity: float = 1.0,
    length: float = 2 * math.pi,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
    device=None,
) -> torch.Tensor:
    """Random vorticity with McWilliams' (1984) decaying-turbulence spectrum.

    The streamfunction has random phases and ``|psi_k|^2 ~ |k|^-1 (1 + (|k|/k0)^4)^-1``
    (``k`` in integer wavenumbers, waves per box), so the energy spectrum
    ``E(k) ~ k^2 / (1 + (k/k0)^4)`` peaks exactly at ``k0 = peak_wavenumber``. The field is
    then scaled so the largest speed on the grid is ``max_velocity`` (the normalisation of
    jax-cfd's ``filtered_velocity_field``). The spectrum is cut to the 2/3-rule modes
    (``3|k_i| < n``), so the field is exactly the one a dealiased solver on this grid
    evolves and its maximum speed is the one asked for. Being a curl, the velocity is
    divergence-free to round-off with no projection step.

    Reference: J. C. McWilliams, The emergence of isolated coherent vortices in turbulent
    flow, J. Fluid Mech. 146 (1984).
    """
    batch = check_int("batch", batch, minimum=1)
    n = check_int("n", n, minimum=4)
    k0 = check_real("peak_wavenumber", peak_wavenumber, positive=True)
    umax = check_real("max_velocity", max_velocity, positive=True)
    length = check_real("length", length, positive=True)
    _dtype(dtype)
    kx, ky = _integer_k(n, device)
    k = (kx**2 + ky**2).sqrt()
    ks = torch.where(k > 0, k, 1.0)
    resolved = (3 * kx.abs() < n) & (3 * ky.abs() < n)
    amp = torch.where((k > 0) & resolved, (ks * (1.0 + (ks / k0) ** 4)) ** -0.5, 0.0)
    psi = _hermitian_noise(batch, n, generator, device) * amp
    two_pi = 2 * math.pi / length
    u = torch.fft.ifft2(1j * two_pi * ky * psi, norm="forward").real
    v = torch.fft.ifft2(-1j * two_pi * kx * psi, norm="forward").real
    speed = torch.sqrt(u**2 + v**2).amax(dim=(-2, -1), keepdim=True)
    w_hat = (two_pi**2) * (kx**2 + ky**2) * psi
    w = torch.fft.ifft2(w_hat, norm="forward").real
    return (w * (umax / speed)).to(dtype)


def fno_forcing(
    n: int, *, amplitude: float = 0.1, length: float = 1.0,
    dtype: torch.dtype = torch.float64, device=None,
) -> torch.Tensor:
    """The forcing of the FNO Navier-Stokes data: ``0.1 (sin + cos)(2 pi (x + y) / L)``."""
    x, y = grid_coordinates(n, length, dtype=torch.float64, device=device)
    a = float(amplitude)
    phase = 2 * math.pi * (x + y) / length
    return (a * (torch.sin(phase) + torch.cos(phase))).to(_dtype(dtype))


def kolmogorov_forcing(
    n: int, *, wavenumber: int = 4, amplitude: float = 1.0, length: float = 2 * math.pi,
    dtype: torch.dtype = torch.float64, device=None,
) -> torch.Tensor:
    """Vorticity of the Kolmogorov body force ``F = (A sin(k y), 0)``: ``-A k cos(k y)``.

    ``k = 2 pi wavenumber / L`` (Kochkov et al. 2021 use wavenumber 4, A = 1, drag 0.1 on
    the 2 pi box). Pair it with ``drag`` in :class:`NavierStokes2D`.
    """
    wavenumber = check_int("wavenumber", wavenumber, minimum=1)
    _, y = grid_coordinates(n, length, dtype=torch.float64, device=device)
    k = 2 * math.pi * wavenumber / length
    return (-float(amplitude) * k * torch.cos(k * y)).to(_dtype(dtype))


def taylor_green_vorticity(
    n: int, t: float = 0.0, *, viscosity: float = 0.0, wavenumber: int = 1,
    amplitude: float = 1.0, length: float = 1.0,
    dtype: torch.dtype = torch.float64, device=None,
) -> torch.Tensor:
    """Exact Taylor-Green vorticity ``A cos(k x) cos(k y) exp(-2 nu k^2 t)``.

    The advection ``u.grad(w)`` of this field vanishes identically (``w`` is a multiple of
    the streamfunction), so it decays at the viscous rate exactly.
    """
    wavenumber = check_int("wavenumber", wavenumber, minimum=1)
    x, y = grid_coordinates(n, length, dtype=torch.float64, device=device)
    k = 2 * math.pi * wavenumber / length
    w = amplitude * torch.cos(k * x) * torch.cos(k * y) * math.exp(-2 * viscosity * k * k * t)
    return w.to(_dtype(dtype))
