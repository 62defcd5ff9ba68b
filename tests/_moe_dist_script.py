"""Run under torchrun (2 processes, gloo): the MoE layer spread over ranks.

Every rank builds the same seeded problem (K experts of a cubic least-squares fit),
solves it with ``MoEHardConstraint`` (each rank its share of the experts), back-propagates
the same scalar loss, and sums the data gradients over ranks. Rank 0 saves coefficients,
the summed gradient and the per-rank iteration counts to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.distributed as dist

from sciml.constraints import MoEHardConstraint


def cubic(c, Phi, y):
    u = (Phi @ c.unsqueeze(-1)).squeeze(-1)
    return u + 0.3 * u**3 - y


def problem(experts: int):
    g = torch.Generator().manual_seed(0)
    Phi = torch.randn(2, experts, 12, 4, generator=g, dtype=torch.float64)
    y = torch.randn(2, experts, 12, generator=g, dtype=torch.float64)
    w = torch.randn(2, experts, 4, generator=g, dtype=torch.float64)
    return Phi, y, w


def solve(experts: int, distributed: bool):
    Phi, y, w = problem(experts)
    Phi.requires_grad_(True)
    layer = MoEHardConstraint(cubic, experts, ridge=1e-6, tol=1e-12,
                              distributed=distributed)
    res = layer(Phi, y, c0=torch.zeros(2, experts, 4, dtype=torch.float64))
    (res.coeffs * w).sum().backward()
    return res, Phi.grad


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--experts", type=int, default=3)
    args = p.parse_args()
    dist.init_process_group("gloo")
    res, grad = solve(args.experts, True)
    world = dist.get_world_size()
    # each rank's loss is the same, so the all-gather's backward gives the owner of an
    # expert W times its gradient; the mean over ranks (as DDP takes) is the gradient
    # which experts this rank solved: the only ones its data gradient reaches
    owned = (grad.abs().sum((0, 2, 3)) > 0).double()
    everyone = [torch.empty_like(owned) for _ in range(world)]
    dist.all_gather(everyone, owned)
    dist.all_reduce(grad)
    grad = grad / world
    if dist.get_rank() == 0:
        torch.save({"coeffs": res.coeffs.detach(), "grad": grad, "status": res.status.name,
                    "iterations": res.iterations, "world": world,
                    "owned": torch.stack(everyone).bool()}, args.out)
    del res, grad
    dist.barrier()
    dist.destroy_process_group()
    # gloo's worker threads can abort the interpreter's own teardown ("terminate called
    # without an active exception", seen once in CI after the results were written): the
    # work is done and saved, so leave without running the finalisers
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
