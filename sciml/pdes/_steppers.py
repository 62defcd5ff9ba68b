"""Time steppers for diagonal-linear + nonlinear spectral systems ``w_t = L w + N(w)``.

Each stepper precomputes its per-step factors (functions of ``L dt`` only) once per step
size, then advances the state with a handful of fused pointwise passes around the
``N`` evaluations. ``N`` returns ``(N(w), z)`` where ``z`` is whatever physical-space
by-product the caller wants from the first stage (the velocity, for the CFL check).
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import torch

Nonlinear = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]

# Carpenter & Kennedy (1994) five-stage fourth-order low-storage Runge-Kutta, written as
# in jax-cfd's ``crank_nicolson_rk4`` (the implicit part is Crank-Nicolson on every
# stage, so the scheme is 4th order in the explicit term and 2nd order in the viscous one).
_CK_ALPHA = (0.0, 0.1496590219993, 0.3704009573644, 0.6222557631345, 0.9582821306748, 1.0)
_CK_BETA = (0.1496590219993, 0.3792103129999, 0.8229550293869, 0.6994504559488,
            0.1530572479681)
_CK_GAMMA = (0.0, -0.4178904745, -1.192151694643, -1.697784692471, -1.514183444257)


class Stepper(abc.ABC):
    """One time-stepping scheme: ``factors(L, dt)`` once, then ``step`` many times."""

    name: str = ""
    order: int = 0
    nonlinear_evals: int = 0

    @abc.abstractmethod
    def factors(self, linear: torch.Tensor, dt: float) -> list[torch.Tensor]:
        """The per-step factors, functions of ``linear * dt`` only."""

    @abc.abstractmethod
    def step(
        self, w: torch.Tensor, nonlinear: Nonlinear, f: list[torch.Tensor], dt: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Advance ``w`` by ``dt``; return the new state and the first stage's ``z``."""


class RK4CN(Stepper):
    """Low-storage RK4 for ``N`` with Crank-Nicolson for ``L`` on each of 5 stages.

    Stage k: ``h <- N(w) + gamma_k h``;
    ``w <- (1 - mu_k L)^{-1} [(1 + mu_k L) w + beta_k dt h]``,
    ``mu_k = dt (alpha_{k+1} - alpha_k) / 2``. The scheme of jax-cfd and torch-cfd
    (Canuto et al., *Spectral Methods*, 2007, App. D.3).
    """

    name = "rk4cn"
    order = 2  # 4 for the explicit term, 2 once viscosity enters
    nonlinear_evals = 5

    def factors(self, linear, dt):
        out = []
        for k in range(5):
            mu = 0.5 * dt * (_CK_ALPHA[k + 1] - _CK_ALPHA[k])
            inv = 1.0 / (1.0 - mu * linear)
            out.append((1.0 + mu * linear) * inv)
            out.append((_CK_BETA[k] * dt) * inv)
        return out

    def step(self, w, nonlinear, f, dt):
        h, z = nonlinear(w)
        w = torch.addcmul(w * f[0], h, f[1])
        for k in range(1, 5):
            n_k, _ = nonlinear(w)
            h = n_k.add_(h, alpha=_CK_GAMMA[k])
            w = torch.addcmul(w.mul_(f[2 * k]), h, f[2 * k + 1])
        return w, z


class IMEX2(Stepper):
    """Second-order IMEX: Heun for ``N``, Crank-Nicolson for ``L`` (two evaluations).

    ``w1 = A w + dt C N(w)``, ``w' = w1 + dt/2 C (N(w1) - N(w))`` with
    ``C = (1 - dt L / 2)^{-1}``, ``A = (1 + dt L / 2) C`` (the RK2-CN of torch-cfd).
    """

    name = "imex2"
    order = 2
    nonlinear_evals = 2

    def factors(self, linear, dt):
        c = 1.0 / (1.0 - 0.5 * dt * linear)
        return [(1.0 + 0.5 * dt * linear) * c, dt * c, 0.5 * dt * c]

    def step(self, w, nonlinear, f, dt):
        n0, z = nonlinear(w)
        w1 = torch.addcmul(w * f[0], n0, f[1])
        n1, _ = nonlinear(w1)
        return w1.addcmul_(n1.sub_(n0), f[2]), z


class IFRK4(Stepper):
    """Integrating-factor classical RK4: ``L`` is integrated exactly, ``N`` to 4th order.

    With ``E = exp(L dt / 2)``:
    ``k1 = N(w)``, ``k2 = N(E (w + dt/2 k1))``, ``k3 = N(E w + dt/2 k2)``,
    ``k4 = N(E^2 w + dt E k3)``,
    ``w' = E^2 w + dt/6 (E^2 k1 + 2 E (k2 + k3) + k4)``.
    Fourth order even with viscosity and drag, and stable to a larger CFL number than the
    5-stage scheme per nonlinear evaluation (Trefethen, *Spectral Methods in MATLAB*, ch. 10).
    """

    name = "ifrk4"
    order = 4
    nonlinear_evals = 4

    def factors(self, linear, dt):
        e = torch.exp(0.5 * dt * linear)
        return [e, e * e]

    def step(self, w, nonlinear, f, dt):
        e, e2 = f
        k1, z = nonlinear(w)
        ew = w * e
        k2, _ = nonlinear(torch.add(w, k1, alpha=0.5 * dt).mul_(e))
        k3, _ = nonlinear(torch.add(ew, k2, alpha=0.5 * dt))
        k4, _ = nonlinear(torch.addcmul(ew * e, k3, e, value=dt))
        # acc = E^2 k1 + 2 E (k2 + k3) + k4
        acc = torch.addcmul(k4, k1, e2).addcmul_(k2.add_(k3), e, value=2.0)
        return torch.addcmul(acc, ew, e, value=6.0 / dt).mul_(dt / 6.0), z


# Dormand & Prince (1980) RK5(4) tableau; the 5th-order weights are used, the 4th-order
# embedded solution is not needed for fixed steps.
_DP_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0)
_DP_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
)
_DP_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84)


class IFDP5(Stepper):
    """Integrating-factor Dormand-Prince: ``L`` exact, ``N`` to 5th order, 6 evaluations.

    Stage ``i``: ``w_i = E(c_i) w + dt sum_j a_ij E(c_i - c_j) N(w_j)`` and
    ``w' = E(1) w + dt sum_j b_j E(1 - c_j) N(w_j)`` with ``E(s) = exp(s dt L)``.
    A smaller error per unit of work than the 4th-order schemes at the steps the CFL
    condition allows, so it reaches a given accuracy sooner
    (Dormand & Prince, J. Comput. Appl. Math. 6, 1980).
    """

    name = "ifdp5"
    order = 5
    nonlinear_evals = 6

    def factors(self, linear, dt):
        # E(c_i - c_j) for every pair used, then E(1 - c_j) and E(c_i)
        cache: dict[float, torch.Tensor] = {}

        def e(s: float) -> torch.Tensor:
            key = round(s, 14)
            if key not in cache:
                cache[key] = torch.exp((s * dt) * linear)
            return cache[key]

        out = []
        for i in range(1, 6):
            out.append(e(_DP_C[i]))
            out.extend(e(_DP_C[i] - _DP_C[j]) for j in range(i))
        out.append(e(1.0))
        out.extend(e(1.0 - _DP_C[j]) for j in range(6))
        return out

    def step(self, w, nonlinear, f, dt):
        k0, z = nonlinear(w)
        ks = [k0]
        pos = 0
        for i in range(1, 6):
            wi = w * f[pos]
            for j in range(i):
                if _DP_A[i][j] != 0.0:
                    wi.addcmul_(ks[j], f[pos + 1 + j], value=dt * _DP_A[i][j])
            pos += 1 + i
            ks.append(nonlinear(wi)[0])
        out = w * f[pos]
        for j in range(6):
            if _DP_B[j] != 0.0:
                out.addcmul_(ks[j], f[pos + 1 + j], value=dt * _DP_B[j])
        return out, z


STEPPERS: dict[str, Stepper] = {s.name: s for s in (RK4CN(), IMEX2(), IFRK4(), IFDP5())}
