"""Linear systems: CG, preconditioned and flexible CG, a differentiable solve, DCDM with its
shipped pretrained networks (:func:`load_pretrained`), and the ``LinearOperator`` protocol
shared by operators and preconditioners (Jacobi, IC(0), AMG, geometric multigrid and the
learned multigrid with its shipped networks, :func:`load_learned_multigrid`), and the
readers of your own matrix, Poisson scene and vectors from files (:func:`load_system`)."""

from ._common import LinearSolveError, LinearStatus, Solution
from .adjoint import solve
from .cg import CG, cg
from .dcdm import DCDM, NetworkPreconditioner, dcdm
from .flexible import FlexibleCG, flexible_cg
from .ichol import IncompleteCholesky
from .io import LoadedSystem, load_matrix, load_scene, load_system, load_vector, save_scene
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
    "LoadedSystem",
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
    "load_matrix",
    "load_pretrained",
    "load_scene",
    "load_system",
    "load_vector",
    "save_learned_multigrid",
    "save_scene",
    "solve",
    "train_learned_multigrid",
]
