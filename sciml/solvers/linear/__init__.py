"""Linear systems: CG, preconditioned and flexible CG, a differentiable solve, DCDM with its
shipped pretrained networks (:func:`load_pretrained`), and the ``LinearOperator`` protocol
shared by operators and preconditioners (Jacobi, IC(0), AMG, geometric multigrid and the
learned multigrid with its shipped networks, :func:`load_learned_multigrid`)."""

from ._common import LinearSolveError, LinearStatus, Solution
from .adjoint import solve
from .cg import CG, cg
from .dcdm import DCDM, NetworkPreconditioner, dcdm
from .flexible import FlexibleCG, flexible_cg
from .ichol import IncompleteCholesky
from .learned_multigrid import (
    LearnedMultigrid,
    LearnedMultigridNet,
    learned_multigrid_loss,
    load_learned_multigrid,
    save_learned_multigrid,
    train_learned_multigrid,
)
from .multigrid import GeometricMultigrid
from .operators import (
    CallableOperator,
    DenseOperator,
    IdentityOperator,
    LinearOperator,
    SparseOperator,
    aslinearoperator,
)
from .preconditioners import Jacobi, PyAMGPreconditioner
from .pretrained import load_pretrained

__all__ = [
    "CG",
    "DCDM",
    "CallableOperator",
    "DenseOperator",
    "FlexibleCG",
    "GeometricMultigrid",
    "IdentityOperator",
    "IncompleteCholesky",
    "Jacobi",
    "LearnedMultigrid",
    "LearnedMultigridNet",
    "LinearOperator",
    "LinearSolveError",
    "LinearStatus",
    "NetworkPreconditioner",
    "PyAMGPreconditioner",
    "Solution",
    "SparseOperator",
    "aslinearoperator",
    "cg",
    "dcdm",
    "flexible_cg",
    "learned_multigrid_loss",
    "load_learned_multigrid",
    "load_pretrained",
    "save_learned_multigrid",
    "solve",
    "train_learned_multigrid",
]
