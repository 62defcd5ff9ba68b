"""Training: one Trainer with progress, checkpoints, exact resume, metrics and torchrun.

Every model in sciml trains through :class:`Trainer`; :class:`TrainConfig` holds the
settings and :class:`TrainResult` what a run did. Checkpoints load with
``torch.load(path, weights_only=True)``; :func:`load_checkpoint` adds checks and
:func:`load_model_state` puts the trained weights into a freshly built model.
:func:`save_weights` / :func:`load_weights` write and read your own weights files the same
way, :func:`read_metrics` reads a run's metrics log, and :func:`evaluate_samples` gives a
trained model's errors per sample.
"""

from ._checkpoint import load_checkpoint, load_model_state
from ._config import TrainConfig, TrainResult
from .evaluate import evaluate_samples
from .trainer import Trainer
from .weights import load_weights, read_metrics, rebuild_model, save_weights

__all__ = [
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "evaluate_samples",
    "load_checkpoint",
    "load_model_state",
    "load_weights",
    "read_metrics",
    "rebuild_model",
    "save_weights",
]
