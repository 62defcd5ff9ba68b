"""Neural operators on your own arrays: an FNO or SFNO trained and evaluated on input/target
arrays or trajectories from an HDF5 or NPZ file (``sciml train fno|sfno --data FILE``)."""

from .figures import plot_operator_evaluation
from .pipeline import (
    KIND,
    build_model,
    evaluate_operator,
    load_operator,
    model_kind,
    train_operator,
)

__all__ = [
    "KIND",
    "build_model",
    "evaluate_operator",
    "load_operator",
    "model_kind",
    "plot_operator_evaluation",
    "train_operator",
]
