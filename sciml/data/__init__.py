"""Data sets: your own arrays (HDF5 or NPZ) for operator learning, and the HDF5 data sets of the
built-in PDEs: writing them (resumable, sharded over processes), reading, normalising."""

from ._store import fingerprint
from .arrays import ArrayData, ArrayDataset, Normalization
from .burgers import BurgersDataset, generate_burgers
from .ns2d import PRESETS, NS2DPreset, generate_ns2d, sample_seed, shard_path
from .ns2d_dataset import NS2DDataset

__all__ = [
    "PRESETS",
    "ArrayData",
    "ArrayDataset",
    "BurgersDataset",
    "NS2DDataset",
    "NS2DPreset",
    "Normalization",
    "fingerprint",
    "generate_burgers",
    "generate_ns2d",
    "sample_seed",
    "shard_path",
]
