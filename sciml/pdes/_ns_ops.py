"""The spectral operators of the 2D vorticity equation, built once per grid.

Layout: the state is the *full* 2D spectrum ``w_hat = fft2(w, norm="forward")`` of shape
``(B, n, n)`` (complex), kept on the 2/3-rule modes. Keeping the full (not halved)
spectrum is what lets one complex inverse FFT produce two real fields at once:

* ``z1 = ifft2((kx + i ky) psi_hat) = u + i v``   (velocity, ``u = psi_y``, ``v = -psi_x``)
* ``z2 = ifft2(i (kx + i ky) w_hat) = w_x + i w_y`` (vorticity gradient)

so the advection ``u.grad(w) = Re(conj(z1) z2)`` costs two complex inverse FFTs and one
forward FFT per evaluation, against four real inverse and one real forward FFT in the
textbook form (torch-cfd, jax-cfd). On CPU a complex n x n FFT costs about what one real
inverse FFT does, so that is roughly 40% less transform work for the same arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..spectral import dealias_mask, wavenumbers


def _advection(z: torch.Tensor) -> torch.Tensor:
    """``u.grad(w) = Re(conj(z1) z2)`` on the grid from the pair ``z = (u + iv, w_x + iw_y)``.

    Also right for the phase-shifted pair of the compact layout: the phase cancels.
    """
    zr = torch.view_as_real(z)
    adv = torch.mul(zr[..., 0, :, :, 0], zr[..., 1, :, :, 0])
    return adv.addcmul_(zr[..., 0, :, :, 1], zr[..., 1, :, :, 1])


def resolved_max_k(n: int) -> int:
    """Largest |k| kept by the 2/3 rule on an n-point axis (``3|k| < n``)."""
    return (n - 1) // 3


@dataclass
class NSOperators:
    """Precomputed symbols for one (n, length, viscosity, drag, forcing, dtype, device).

    Two layouts:

    * *full*: ``(n, n)`` FFT order, for the differentiable residual and the public helpers;
    * *compact*: the stepping state, the ``(M, M)`` centred block (``M = 2m + 1``,
      ``m = (n - 1) // 3``) of resolved modes, index ``j`` holding wavenumber ``j - m``.
      Its inverse transform zero-pads at the end of each axis, which shifts both fields of
      the pair by the same phase ``exp(2 pi i m (p + q) / n)``; the product
      ``Re(conj(z1) z2)`` cancels it, so no phase correction and no mask pass is needed,
      and the dealiasing is simply the truncation of the product's spectrum to the block.
    """

    n: int
    m: int
    length: float
    # full layout
    mask: torch.Tensor  # (n, n) real 0/1
    zk_full: torch.Tensor  # (2, n, n) complex: velocity and gradient symbols (masked)
    k2_full: torch.Tensor
    linear_full: torch.Tensor  # (n, n) real: -nu |k|^2 - drag
    forcing_full: torch.Tensor | None  # (n, n) complex
    # compact layout
    idx: torch.Tensor  # (M,) FFT-order positions of the centred wavenumbers -m..m
    zk: torch.Tensor  # (2, M, M) complex
    linear: torch.Tensor  # (M, M) real
    forcing: torch.Tensor | None  # (M, M) complex
    # zero-padded inverse-transform inputs, one per batch shape, reused by every
    # evaluation: allocating (and page-faulting) a fresh n x n pair per stage cost a
    # third of the step time on CPU
    _pads: dict = field(default_factory=dict, repr=False)

    @staticmethod
    def build(
        n: int,
        length: float,
        viscosity: float,
        drag: float,
        forcing: torch.Tensor | None,
        dtype: torch.dtype,
        device: torch.device,
    ) -> NSOperators:
        cdtype = torch.complex64 if dtype == torch.float32 else torch.complex128
        # the library's conventions (sciml.spectral): angular wavenumbers 2 pi k / L in
        # fftn order and the 2/3-rule mask, both on the full (not halved) layout
        kx, ky = (k.expand(n, n) for k in wavenumbers((n, n), (length, length), real=False,
                                                      device=device))
        k2 = kx**2 + ky**2
        inv_k2 = torch.where(k2 > 0, 1.0 / torch.where(k2 > 0, k2, 1.0), 0.0)
        mask = dealias_mask((n, n), real=False, device=device).to(torch.float64)
        kc = torch.complex(kx, ky)
        zk = torch.stack([kc * inv_k2 * mask, 1j * kc * mask])
        linear = -viscosity * k2 - drag
        m = resolved_max_k(n)
        idx = torch.cat([torch.arange(n - m, n), torch.arange(0, m + 1)]).to(device)
        fh = fc = None
        if forcing is not None:
            fh = torch.fft.fft2(forcing.to(torch.float64), norm="forward")
            fc = fh[idx][:, idx].to(cdtype).contiguous()
            fh = fh.to(cdtype)
        return NSOperators(
            n=n,
            m=m,
            length=length,
            mask=mask.to(dtype),
            zk_full=zk.to(cdtype).contiguous(),
            k2_full=k2.to(dtype).contiguous(),
            linear_full=linear.to(dtype).contiguous(),
            forcing_full=fh,
            idx=idx,
            zk=zk[:, idx][:, :, idx].to(cdtype).contiguous(),
            linear=linear[idx][:, idx].to(dtype).contiguous(),
            forcing=fc,
        )

    # -- layouts -------------------------------------------------------------------------

    def to_compact(self, w: torch.Tensor) -> torch.Tensor:
        """Physical ``(..., n, n)`` -> compact centred spectrum ``(..., M, M)``."""
        f = torch.fft.fft2(w, norm="forward")
        return f.index_select(-2, self.idx).index_select(-1, self.idx)

    def from_compact(self, s: torch.Tensor) -> torch.Tensor:
        """Compact centred spectrum -> physical field (exact, no phase shift)."""
        full = s.new_zeros((*s.shape[:-2], self.n, self.n))
        full[..., self.idx[:, None], self.idx[None, :]] = s
        return torch.fft.ifft2(full, norm="forward").real

    # -- the explicit term in the compact layout (the hot loop) --------------------------

    def nonlinear(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``N(w) = f - P_{2/3}(u.grad w)`` (compact) and the phase-shifted pair ``z``.

        ``z[..., 0, :, :]`` is ``u + i v`` times a unit phase: its modulus is the speed.
        """
        n, m = self.n, self.m
        z = torch.fft.ifft2(self._padded_pair(s), norm="forward")
        adv = _advection(z)
        h = torch.fft.rfft2(adv, norm="forward")
        h = torch.cat([h[..., n - m:, : m + 1], h[..., : m + 1, : m + 1]], dim=-2)  # rows -m..m
        out = torch.cat([h[..., 1:].flip((-2, -1)).conj().neg(), h.neg()], dim=-1)
        if self.forcing is not None:
            out.add_(self.forcing)
        return out, z

    def _padded_pair(self, s: torch.Tensor) -> torch.Tensor:
        """``s * zk`` zero-padded to ``(..., 2, n, n)`` (top-left block; see the phase note)."""
        n, M = self.n, 2 * self.m + 1
        if s.requires_grad and torch.is_grad_enabled():  # differentiable path: no reuse
            return torch.nn.functional.pad(s.unsqueeze(-3) * self.zk, (0, n - M, 0, n - M))
        key = tuple(s.shape[:-2])
        buf = self._pads.get(key)
        if buf is None:
            if len(self._pads) >= 2:
                self._pads.clear()
            buf = self._pads[key] = s.new_zeros((*key, 2, n, n))
        torch.mul(s.unsqueeze(-3), self.zk, out=buf[..., :M, :M])
        return buf

    # -- the full layout (residual, public helpers) --------------------------------------

    def physical_pair(self, w_hat: torch.Tensor) -> torch.Tensor:
        """``z = (u + i v, w_x + i w_y)`` on the grid from a full spectrum, ``(..., 2, n, n)``."""
        return torch.fft.ifft2(w_hat.unsqueeze(-3) * self.zk_full, norm="forward")

    @staticmethod
    def advection_hat(z: torch.Tensor) -> torch.Tensor:
        """Full spectrum of ``u.grad(w)`` (undealiased) from :meth:`physical_pair`."""
        adv = _advection(z)
        return torch.fft.fft2(adv, norm="forward")
