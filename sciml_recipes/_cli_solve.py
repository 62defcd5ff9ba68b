"""``sciml solve``: solve ``A x = b`` from a file with the library's conjugate gradients and a
chosen preconditioner, and report the true residual."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

METHODS = ("cg", "jacobi", "ic0", "pyamg", "gmg", "learned-mg", "dcdm")
#: preconditioners that need the grid of a Poisson scene, not only its matrix
SCENE_METHODS = ("gmg", "learned-mg", "dcdm")
EXAMPLE = "sciml solve laplace.mtx --rhs b.npy --method ic0 --rtol 1e-8 --out x.npy"


@dataclasses.dataclass(frozen=True)
class SolveSettings:
    """How ``sciml solve`` solves.

    Attributes:
        method: ``cg`` (no preconditioner), ``jacobi``, ``ic0``, ``pyamg``, or for a Poisson
            scene also ``gmg``, ``learned-mg`` (PCG with multigrid, geometric or learned) and
            ``dcdm`` (the shipped DCDM network in its own flexible iteration).
        rtol: stop when ``||b - A x|| <= rtol ||b||``; ``None`` takes the default for
            ``dtype`` from :func:`sciml.solvers.default_tol` (1e-5 in float64, 1e-4 in float32).
        max_iter: iteration limit; ``None`` is the solver's default (``10 n``).
        device: where the iteration runs.
        dtype: ``float64`` or ``float32``, the precision of the iteration.
        seed: seed of the default right-hand side of a scene.
    """

    method: str = "ic0"
    rtol: float | None = None
    max_iter: int | None = None
    device: str = "cpu"
    dtype: str = "float64"
    seed: int = 0


@dataclasses.dataclass
class SolveReport:
    """Result of :func:`solve_file`.

    Attributes:
        x: the solution, float64 numpy (a scene's: full grid, 0 off the fluid cells).
        status: the solver's :class:`~sciml.solvers.linear.LinearStatus`.
        stats: ``iterations``, ``relative_residual`` (``||b - A x|| / ||b||`` recomputed in
            float64), ``rtol`` (the tolerance used), ``setup_seconds``, ``solve_seconds``,
            ``n`` (unknowns), ``kind``
            (``matrix`` or ``scene``), ``singular`` (a scene with a floating region: the
            right-hand side's null-space component was removed before the solve).
        converged: the status is CONVERGED.
    """

    x: np.ndarray
    status: Any
    stats: dict[str, Any]
    converged: bool


def _fail(msg: str) -> ValueError:
    return ValueError(msg)


def _preconditioner(method: str, A: Any, op: Any) -> Any:
    """The preconditioner ``method`` of the scipy matrix ``A`` (``op``: the same matrix as a
    torch operator on the solve's device, for Jacobi's diagonal)."""
    from sciml.solvers.linear import IncompleteCholesky, Jacobi, PyAMGPreconditioner

    if method == "cg":
        return None
    if method == "jacobi":
        return Jacobi(op)
    if method == "ic0":
        return IncompleteCholesky(A)
    try:
        return PyAMGPreconditioner(A)
    except ImportError:
        raise _fail("--method pyamg needs the pyamg package: `pip install pyamg`, or use "
                    "--method ic0") from None


def solve_file(matrix: str | Path, rhs: str | Path | None = None,
               settings: SolveSettings = SolveSettings(), *, throw: bool = False) -> SolveReport:
    """Solve the system in ``matrix`` with CG and the preconditioner of ``settings``.

    Args:
        matrix: a Matrix Market ``.mtx`` file, a ``scipy.sparse.save_npz`` file, or a Poisson
            scene NPZ (``cells``, optional ``coefficients`` and ``boundary``), read by
            :func:`sciml.solvers.linear.load_system`.
        rhs: a ``.npy`` / ``.txt`` vector (:func:`sciml.solvers.linear.load_vector`); for a
            scene optional (default :func:`~sciml.pdes.poisson_scenes.divergence_rhs` with
            ``settings.seed``) and either full-grid (``n`` cells) or fluid-only (``n_fluid``).
        settings: method, tolerance, limits, device and dtype.
        throw: raise :class:`~sciml.solvers.linear.LinearSolveError` unless converged.

    Returns:
        A :class:`SolveReport`.

    Raises:
        FileNotFoundError: a missing file.
        ValueError: an unreadable file, an unknown format, a non-square or non-symmetric
            matrix, a right-hand side of the wrong length, or a method that does not apply.
        LinearSolveError: ``throw`` and the solve did not converge.
    """
    import torch

    from sciml.solvers.linear import (
        GeometricMultigrid,
        LearnedMultigrid,
        LinearSolveError,
        LinearStatus,
        aslinearoperator,
        cg,
        dcdm,
        load_pretrained,
        load_system,
        load_vector,
    )

    s = settings
    if s.method not in METHODS:
        raise _fail(f"unknown method {s.method!r}; pass one of {', '.join(METHODS)}")
    if s.dtype not in ("float32", "float64"):
        raise _fail(f"unknown dtype {s.dtype!r}; pass float32 or float64")
    dtype = getattr(torch, s.dtype)
    loaded = load_system(matrix)
    A, system = loaded.matrix, loaded.scene
    b = load_vector(rhs, name="RHS") if rhs is not None else None
    if system is None:
        if s.method in SCENE_METHODS:
            raise _fail(f"--method {s.method} applies only to a Poisson scene file (an NPZ "
                        "with a 'cells' array); for a bare matrix use --method ic0, pyamg, "
                        "jacobi or cg")
        if b is None:
            raise _fail("a bare matrix needs a right-hand side: pass --rhs b.npy")
        if b.shape[0] != A.shape[0]:
            raise _fail(f"RHS has length {b.shape[0]} but MATRIX is {A.shape[0]}x{A.shape[1]}; "
                        "pass a vector with one entry per row")
        b_red = b
    else:
        if b is None:
            from sciml.pdes.poisson_scenes import divergence_rhs

            b = divergence_rhs(system, 1, seed=s.seed)[0].numpy()
        elif b.shape[0] not in (system.n, system.n_fluid):
            raise _fail(f"RHS has length {b.shape[0]} but the scene has {system.n} cells "
                        f"({system.n_fluid} fluid); pass a full-grid or a fluid-only vector")
        bt = torch.from_numpy(b)
        if b.shape[0] == system.n_fluid and system.n_fluid != system.n:
            bt = system.from_fluid(bt)
        b_red = system.to_fluid(system.project_range(bt)).numpy()

    t0 = time.perf_counter()
    net = M = None
    if system is not None and s.method in SCENE_METHODS:
        if s.method == "dcdm":
            net = load_pretrained(system.ndim, device=s.device)  # the shipped DCDM network
        else:
            cls = GeometricMultigrid if s.method == "gmg" else LearnedMultigrid
            M = cls(system, dtype=dtype, device=s.device)
        op = system.operator(dtype=dtype, device=s.device)
        rhs_t = system.from_fluid(torch.from_numpy(b_red))
    else:
        op = aslinearoperator(A, dtype=dtype, device=s.device)  # a torch CSR operator
        M = _preconditioner(s.method, A, op)
        rhs_t = torch.from_numpy(b_red)
    setup = time.perf_counter() - t0
    rhs_t = rhs_t.to(device=s.device, dtype=dtype)
    t0 = time.perf_counter()
    if net is not None:
        sol = dcdm(op, rhs_t, net=net, system=system, rtol=s.rtol, max_iter=s.max_iter)
    else:
        sol = cg(op, rhs_t, rtol=s.rtol, max_iter=s.max_iter, M=M)
    solve_seconds = time.perf_counter() - t0

    x = sol.x.detach().to("cpu", torch.float64)
    if system is not None and s.method in SCENE_METHODS:
        x_red = system.to_fluid(x).numpy()
    else:
        x_red = x.numpy()
    bnorm = float(np.linalg.norm(b_red))
    res = float(np.linalg.norm(b_red - A @ x_red))
    rel = res / bnorm if bnorm > 0 else res
    x_out = system.from_fluid(torch.from_numpy(x_red)).numpy() if system is not None else x_red
    converged = sol.status == LinearStatus.CONVERGED
    stats = {
        "iterations": int(sol.stats["iterations"]), "relative_residual": rel,
        "rtol": float(sol.stats["rtol"]),
        "setup_seconds": setup, "solve_seconds": solve_seconds, "n": int(b_red.shape[0]),
        "kind": loaded.kind,
        "singular": bool(system is not None and system.has_null_space()),
    }
    if throw and not converged:
        raise LinearSolveError(f"sciml solve: {sol.status.name}: {sol.status.value}")
    return SolveReport(x=x_out, status=sol.status, stats=stats, converged=converged)


def _default_rtol(dtype: str) -> float:
    import torch

    from sciml.solvers import default_tol

    return default_tol("linear", getattr(torch, dtype))


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``sciml solve`` on the subcommands ``sub``."""
    from sciml_recipes._cli_types import add_device, positive_float, positive_int

    d = SolveSettings()
    p = sub.add_parser(
        "solve", help="solve A x = b from a .mtx / .npz file with preconditioned CG",
        description="Solve A x = b (A symmetric positive definite) by conjugate gradients\n"
        "with a preconditioner; print the iterations, the true relative residual\n"
        "||b - A x|| / ||b|| (recomputed in float64), the setup and solve times and the\n"
        "status. Exit status 0: converged, 1: not converged, 2: bad input.",
        epilog=f"example: {EXAMPLE}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("matrix", metavar="MATRIX",
                   help="a Matrix Market .mtx file, a scipy.sparse.save_npz .npz file, or a "
                   "Poisson scene .npz (arrays 'cells' and optional 'coefficients')")
    p.add_argument("--rhs", default=None,
                   help="the right-hand side, a .npy or .txt vector (default: none; required "
                   "for a matrix, for a scene a random divergence from --seed)")
    p.add_argument("--method", choices=METHODS, default=d.method,
                   help="preconditioner: none (cg), jacobi, ic0, pyamg; a scene file also "
                   "takes gmg (geometric multigrid), learned-mg (the shipped learned "
                   "multigrid) and dcdm (the shipped DCDM network, its own flexible "
                   f"iteration instead of CG) (default: {d.method})")
    p.add_argument("--rtol", type=positive_float, default=d.rtol,
                   help="stop when ||b - A x|| <= rtol ||b|| (default: the library's value "
                   f"for --dtype: {_default_rtol('float64'):g} in float64, "
                   f"{_default_rtol('float32'):g} in float32)")
    p.add_argument("--max-iter", type=positive_int, default=d.max_iter,
                   help="iteration limit (default: 10 n)")
    add_device(p, "cpu")
    p.add_argument("--dtype", choices=["float64", "float32"], default=d.dtype,
                   help=f"precision of the iteration (default: {d.dtype})")
    p.add_argument("--seed", type=int, default=d.seed,
                   help=f"seed of a scene's default RHS (default: {d.seed})")
    p.add_argument("--out", default=None,
                   help="write the solution here, a .npy file, atomically (default: not "
                   "written)")


def run(args: argparse.Namespace) -> int:
    """Run ``sciml solve`` from parsed arguments; return the exit status (0 converged, 1 not).

    Raises:
        ValueError: bad input (the caller prints it and exits with status 2).
    """
    from sciml.utils import atomic_write
    from sciml_recipes._cli_types import check_writable

    if args.out is not None:
        if Path(args.out).suffix.lower() != ".npy":
            raise _fail(f"--out {args.out} must end in .npy (the solution is written by "
                        "numpy.save); pass e.g. --out x.npy")
        check_writable(args.out, file=True)
    settings = SolveSettings(method=args.method, rtol=args.rtol, max_iter=args.max_iter,
                             device=args.device, dtype=args.dtype, seed=args.seed)
    rep = solve_file(args.matrix, args.rhs, settings)
    st = rep.stats
    print(f"{st['kind']}: n = {st['n']}, method {settings.method}, {settings.dtype} on "
          f"{settings.device}")
    if st["singular"]:
        print("note: the scene has a region without a Dirichlet face (A is singular); the "
              "RHS's mean over it was removed, and x is one solution of many")
    default = " (the default for this dtype)" if settings.rtol is None else ""
    print(f"rtol: {st['rtol']:g}{default}")
    print(f"iterations: {st['iterations']}")
    print(f"relative residual ||b - A x|| / ||b||: {st['relative_residual']:.3e}")
    print(f"setup: {st['setup_seconds']:.3f} s, solve: {st['solve_seconds']:.3f} s")
    print(f"status: {rep.status.name}")
    if args.out is not None:
        atomic_write(args.out, lambda f: np.save(f, rep.x))
        print(f"wrote {args.out}")
    if not rep.converged:
        print(f"sciml solve: not converged: {rep.status.value}", file=sys.stderr)
        return 1
    return 0
