"""The helpers sciml uses at its own boundaries, public for scripts built on it.

The recipes beside the library (:mod:`sciml_recipes`) and your own scripts validate their
arguments and write their files the same way the library does:

* validators that raise ``TypeError`` (wrong kind of object) or ``ValueError`` (right kind,
  bad value) with a message naming the argument, the value and the fix:
  :func:`check_int`, :func:`check_real`, :func:`check_positive`, :func:`check_bool`,
  :func:`check_choice`, :func:`check_tolerances`,
  :func:`check_int_tuple`, :func:`check_tensor`, :func:`check_finite`,
  :func:`check_device`;
* files written whole or not at all: :func:`atomic_write` (bytes, text or a writer
  callback) and :func:`atomic_path` (a temporary path for writers that open the file
  themselves, such as h5py); :func:`writer_lock` keeps two writers of one output apart.

Example:
    >>> from sciml.utils import check_int
    >>> check_int("epochs", 3, minimum=1)
    3
"""

from ._device import check_device
from ._files import atomic_path, atomic_write, writer_lock
from ._validation import (
    check_bool,
    check_choice,
    check_finite,
    check_int,
    check_int_tuple,
    check_positive,
    check_real,
    check_tensor,
    check_tolerances,
)

__all__ = [
    "atomic_path",
    "atomic_write",
    "check_bool",
    "check_choice",
    "check_device",
    "check_finite",
    "check_int",
    "check_int_tuple",
    "check_positive",
    "check_real",
    "check_tensor",
    "check_tolerances",
    "writer_lock",
]
