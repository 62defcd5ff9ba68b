"""A conditional neural process and a deep ensemble: probabilistic models of a solution.

ProbConserv (Hansen et al. 2023) needs a model that, given sparse observations of a
solution, predicts a mean and a variance anywhere. :class:`ConditionalNP` (Garnelo et
al., *Conditional neural processes*, ICML 2018) encodes each observation ``(t, x, u)``
with an MLP, averages the codes (so the order and the number of observations do not
matter) and decodes ``(code, t, x)`` into a Gaussian. :class:`DeepEnsemble`
(Lakshminarayanan et al. 2017) combines several independently trained members into the
moment-matched Gaussian of their mixture, which adds the members' disagreement (the
epistemic part) to their own variances.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .._validation import as_tensors, check_int, check_tensor

__all__ = ["ConditionalNP", "DeepEnsemble", "gaussian_nll"]


def _mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.GELU())
    return nn.Sequential(*layers)


class ConditionalNP(nn.Module):
    """Gaussian prediction ``u(t, x) ~ N(mean, var)`` from a set of observations.

    ``r = mean_j enc(t_j, x_j, u_j)``;  ``(m, s) = dec(r, t, x)``;
    ``var = softplus(s) + min_var``.

    Args:
        width: hidden width of both MLPs.
        depth: hidden layers of each MLP (>= 1).
        code: size of the representation ``r``.
        min_var: floor of the predicted variance (keeps the likelihood bounded).

    ``forward(context, query)``: ``context`` ``(B, Nc, 3)`` rows ``(t, x, u)``;
    ``query`` ``(B, Nq, 2)`` rows ``(t, x)``. Returns ``(mean, var)``, each ``(B, Nq)``.
    Coordinates should be of order one (scale ``x`` by the domain length).
    """

    def __init__(self, width: int = 64, depth: int = 3, code: int = 64,
                 min_var: float = 1e-6) -> None:
        super().__init__()
        self.width = check_int("width", width, minimum=1)
        self.depth = check_int("depth", depth, minimum=1)
        self.code = check_int("code", code, minimum=1)
        if not (isinstance(min_var, (int, float)) and min_var > 0):
            raise ValueError(f"min_var must be > 0, got {min_var!r}; a typical value is 1e-6")
        self.min_var = float(min_var)
        self.encoder = _mlp([3] + [width] * depth + [code])
        self.decoder = _mlp([code + 2] + [width] * depth + [2])

    def config(self) -> dict:
        """Constructor arguments (JSON-safe), to rebuild the model."""
        return {"width": self.width, "depth": self.depth, "code": self.code,
                "min_var": self.min_var}

    def encode(self, context: Tensor) -> Tensor:
        """The representation ``r`` of the observations, ``(B, code)``."""
        context = check_tensor("context", context, ndim=3, floating=True)
        if context.shape[-1] != 3:
            raise ValueError(f"context must be (B, Nc, 3) rows (t, x, u), got "
                             f"{tuple(context.shape)}")
        if context.shape[1] == 0:
            raise ValueError("context holds no observations (Nc = 0); pass at least one")
        return self.encoder(context).mean(dim=1)

    def decode(self, r: Tensor, query: Tensor) -> tuple[Tensor, Tensor]:
        """``(mean, var)`` at ``query`` ``(B, Nq, 2)`` for representations ``r``."""
        query = check_tensor("query", query, ndim=3, floating=True)
        if query.shape[-1] != 2 or query.shape[0] != r.shape[0]:
            raise ValueError(f"query must be (B={r.shape[0]}, Nq, 2) rows (t, x), got "
                             f"{tuple(query.shape)}")
        h = torch.cat([r.unsqueeze(1).expand(-1, query.shape[1], -1), query], dim=-1)
        out = self.decoder(h)
        return out[..., 0], F.softplus(out[..., 1]) + self.min_var

    def forward(self, context: Tensor, query: Tensor) -> tuple[Tensor, Tensor]:
        return self.decode(self.encode(context), query)


class DeepEnsemble(nn.Module):
    """The moment-matched Gaussian of an equal-weight mixture of Gaussian predictors.

    ``mean = (1/M) sum_i m_i``; ``var = (1/M) sum_i (v_i + m_i^2) - mean^2``, i.e. the
    members' mean variance plus the variance of their means.

    Args:
        members: modules whose ``forward(*args)`` returns ``(mean, var)``.
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        members = list(members)
        if not members or not all(isinstance(m, nn.Module) for m in members):
            raise ValueError("members must be a non-empty sequence of nn.Modules returning "
                             "(mean, var)")
        self.members = nn.ModuleList(members)

    def forward(self, *args: Tensor) -> tuple[Tensor, Tensor]:
        means, variances = zip(*(m(*args) for m in self.members))
        mu = torch.stack(means)
        mean = mu.mean(0)
        var = torch.stack(variances).mean(0) + mu.var(0, unbiased=False)
        return mean, var


def gaussian_nll(mean: Tensor, var: Tensor, target: Tensor) -> Tensor:
    """Mean Gaussian negative log-likelihood ``0.5 log(2 pi var) + (y - m)^2 / (2 var)``.

    Equivalent to ``torch.nn.functional.gaussian_nll_loss(mean, target, var, full=True)``
    without its variance clamp. The Gaussian log-likelihood metric of ProbConserv is its
    negative.
    """
    mean, var, target = as_tensors(mean, var, target)
    mean = check_tensor("mean", mean, real=True)
    var = check_tensor("var", var, real=True)
    target = check_tensor("target", target, real=True)
    if not (mean.shape == var.shape == target.shape):
        raise ValueError(f"mean {tuple(mean.shape)}, var {tuple(var.shape)} and target "
                         f"{tuple(target.shape)} must have one shape")
    return (0.5 * torch.log(2 * torch.pi * var) + (target - mean) ** 2 / (2 * var)).mean()
