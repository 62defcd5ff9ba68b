"""Fused CPU kernels for cell-grid stencils: the Poisson operator and the multigrid cycle
(numba; torch operations are the fallback).

Every kernel works on grids of three axes ``(n0, n1, n2)`` batched over a leading axis:
a 2D grid is passed as ``(1, n1, n2)`` with an empty axis-0 link array, so one kernel
serves both. The point of fusing is memory traffic: a torch expression of a 7-point
stencil makes one pass over memory per term (seven or more), a fused loop one pass in
all, and the cycle is bound by memory bandwidth.

:func:`available` says whether numba can be imported; the multigrid falls back to torch
operations when it cannot, or when the tensors are not on the CPU; the operator also
when autograd must see the product.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["apply", "available", "colour_sweep", "prolong_add", "residual", "restrict"]


@functools.cache
def available() -> bool:
    try:
        import numba  # noqa: F401
    except Exception:  # pragma: no cover - numba is a dependency, but keep a fallback
        return False
    return True


@functools.cache
def _kernels():
    from numba import njit, prange

    opts = {"parallel": True, "fastmath": True, "cache": True, "nogil": True}
    inner = {"fastmath": True, "cache": True, "nogil": True, "inline": "always"}

    @njit(**inner)
    def stencil_row(buf, x, r, diag, k0, k1, k2, b, i, j):
        """``buf = (r - A x)`` on the row ``(b, i, j, :)``."""
        n0, n1, n2 = diag.shape
        for k in range(n2):
            buf[k] = r[b, i, j, k] - diag[i, j, k] * x[b, i, j, k]
        if i > 0:
            for k in range(n2):
                buf[k] += k0[i - 1, j, k] * x[b, i - 1, j, k]
        if i < n0 - 1:
            for k in range(n2):
                buf[k] += k0[i, j, k] * x[b, i + 1, j, k]
        if j > 0:
            for k in range(n2):
                buf[k] += k1[i, j - 1, k] * x[b, i, j - 1, k]
        if j < n1 - 1:
            for k in range(n2):
                buf[k] += k1[i, j, k] * x[b, i, j + 1, k]
        for k in range(n2 - 1):
            buf[k] += k2[i, j, k] * x[b, i, j, k + 1]
            buf[k + 1] += k2[i, j, k] * x[b, i, j, k]

    @njit(**opts)
    def apply(out, x, mask, diag, k0, k1, k2):
        """``out = A (mask * x)`` (entries of ``x`` off the mask are ignored, even NaN)."""
        nb = x.shape[0]
        n0, n1, n2 = diag.shape
        for row in prange(nb * n0 * n1):
            b = row // (n0 * n1)
            i = (row // n1) % n0
            j = row % n1
            y = out[b, i, j]
            for k in range(n2):
                y[k] = diag[i, j, k] * x[b, i, j, k] if mask[i, j, k] else 0.0
            if i > 0:
                for k in range(n2):
                    if mask[i - 1, j, k]:
                        y[k] -= k0[i - 1, j, k] * x[b, i - 1, j, k]
            if i < n0 - 1:
                for k in range(n2):
                    if mask[i + 1, j, k]:
                        y[k] -= k0[i, j, k] * x[b, i + 1, j, k]
            if j > 0:
                for k in range(n2):
                    if mask[i, j - 1, k]:
                        y[k] -= k1[i, j - 1, k] * x[b, i, j - 1, k]
            if j < n1 - 1:
                for k in range(n2):
                    if mask[i, j + 1, k]:
                        y[k] -= k1[i, j, k] * x[b, i, j + 1, k]
            for k in range(n2 - 1):
                if mask[i, j, k + 1]:
                    y[k] -= k2[i, j, k] * x[b, i, j, k + 1]
                if mask[i, j, k]:
                    y[k + 1] -= k2[i, j, k] * x[b, i, j, k]

    @njit(**opts)
    def residual(out, x, r, diag, k0, k1, k2, scale):
        """``out = scale * (r - A x)`` (``scale`` a grid; pass ones for the plain residual)."""
        nb = x.shape[0]
        n0, n1, n2 = diag.shape
        for row in prange(nb * n0 * n1):
            b = row // (n0 * n1)
            i = (row // n1) % n0
            j = row % n1
            buf = out[b, i, j]
            stencil_row(buf, x, r, diag, k0, k1, k2, b, i, j)
            for k in range(n2):
                buf[k] *= scale[i, j, k]

    @njit(**opts)
    def colour_sweep(x, r, diag, inv, k0, k1, k2):
        """``x += inv * (r - A x)`` in place, where ``inv`` is zero on one colour of a
        red-black colouring: the updated cells couple only to cells it leaves alone, so
        the in-place update is exactly one Gauss-Seidel half-sweep."""
        nb = x.shape[0]
        n0, n1, n2 = diag.shape
        for row in prange(nb * n0 * n1):
            b = row // (n0 * n1)
            i = (row // n1) % n0
            j = row % n1
            buf = np.empty(n2, x.dtype)
            stencil_row(buf, x, r, diag, k0, k1, k2, b, i, j)
            for k in range(n2):
                x[b, i, j, k] += inv[i, j, k] * buf[k]

    @njit(**opts)
    def prolong_add(x, xc, weight, up0, up1):
        """``x += weight * P xc``: cell-centred (bi/tri)linear interpolation, axes 0 and 1
        doubled when ``up0``/``up1``, the last always."""
        nb = x.shape[0]
        n0, n1, n2 = x.shape[1:]
        m0 = n0 // 2 if up0 else n0
        m1 = n1 // 2 if up1 else n1
        m2 = n2 // 2
        for row in prange(nb * n0 * n1):
            b = row // (n0 * n1)
            i = (row // n1) % n0
            j = row % n1
            line = np.zeros(m2, x.dtype)
            # the coarse rows that touch fine row (i, j) and their weights
            if up0:
                ia, ib = i // 2, i // 2 + (1 if i % 2 else -1)
                wa0, wb0 = 0.75, (0.25 if 0 <= ib < m0 else 0.0)
                ib = min(max(ib, 0), m0 - 1)
            else:
                ia, ib, wa0, wb0 = i, i, 1.0, 0.0
            if up1:
                ja, jb = j // 2, j // 2 + (1 if j % 2 else -1)
                wa1, wb1 = 0.75, (0.25 if 0 <= jb < m1 else 0.0)
                jb = min(max(jb, 0), m1 - 1)
            else:
                ja, jb, wa1, wb1 = j, j, 1.0, 0.0
            for k in range(m2):
                line[k] = (wa0 * (wa1 * xc[b, ia, ja, k] + wb1 * xc[b, ia, jb, k])
                           + wb0 * (wa1 * xc[b, ib, ja, k] + wb1 * xc[b, ib, jb, k]))
            w = weight[i, j]
            xr = x[b, i, j]
            for q in range(m2):
                lo = line[q - 1] if q > 0 else 0.0
                hi = line[q + 1] if q < m2 - 1 else 0.0
                xr[2 * q] += (0.75 * line[q] + 0.25 * lo) * w[2 * q]
                xr[2 * q + 1] += (0.75 * line[q] + 0.25 * hi) * w[2 * q + 1]

    @njit(**opts)
    def restrict(out, f, cmask, up0, up1):
        """``out = cmask * P^T f``, the transpose of the interpolation of :func:`prolong_add`
        (``out`` may be larger than the coarse grid of ``f``: the rest is left alone)."""
        nb = out.shape[0]
        n0, n1, n2 = f.shape[1:]
        m0 = n0 // 2 if up0 else n0
        m1 = n1 // 2 if up1 else n1
        m2 = n2 // 2
        for row in prange(nb * m0 * m1):
            b = row // (m0 * m1)
            p = (row // m1) % m0
            q = row % m1
            line = np.zeros(n2, f.dtype)
            for si in range(4 if up0 else 1):
                if up0:
                    i = 2 * p - 1 + si
                    wi = 0.75 if si in (1, 2) else 0.25
                    if i < 0 or i >= n0:
                        continue
                else:
                    i, wi = p, 1.0
                for sj in range(4 if up1 else 1):
                    if up1:
                        j = 2 * q - 1 + sj
                        wj = 0.75 if sj in (1, 2) else 0.25
                        if j < 0 or j >= n1:
                            continue
                    else:
                        j, wj = q, 1.0
                    w = wi * wj
                    for k in range(n2):
                        line[k] += w * f[b, i, j, k]
            o = out[b, p, q]
            for c in range(m2):
                s = 0.75 * (line[2 * c] + line[2 * c + 1])
                if c > 0:
                    s += 0.25 * line[2 * c - 1]
                if c < m2 - 1:
                    s += 0.25 * line[2 * c + 2]
                o[c] = s * cmask[p, q, c]

    return {"apply": apply, "residual": residual, "colour_sweep": colour_sweep,
            "prolong_add": prolong_add, "restrict": restrict}


def apply(out, x, mask, diag, links) -> None:
    _kernels()["apply"](out, x, mask, diag, *links)


def residual(out, x, r, diag, links, scale) -> None:
    _kernels()["residual"](out, x, r, diag, *links, scale)


def colour_sweep(x, r, diag, inv, links) -> None:
    _kernels()["colour_sweep"](x, r, diag, inv, *links)


def prolong_add(x, xc, weight, up0: bool, up1: bool) -> None:
    _kernels()["prolong_add"](x, xc, weight, up0, up1)


def restrict(out, f, cmask, up0: bool, up1: bool) -> None:
    _kernels()["restrict"](out, f, cmask, up0, up1)
