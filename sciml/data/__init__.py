"""HDF5 data sets: writing them (resumable, sharded over processes), reading, normalising."""

from ._store import fingerprint
from .burgers import BurgersDataset, generate_burgers
from .ns2d import PRESETS, NS2DPreset, generate_ns2d, sample_seed, shard_path
from .ns2d_dataset import NS2DDataset

__all__ = [
    "PRESETS",
    "BurgersDataset",
    "NS2DDataset",
    "NS2DPreset",
    "fingerprint",
    "generate_burgers",
    "generate_ns2d",
    "sample_seed",
    "shard_path",
]
