"""Solvers: linear systems (``sciml.solvers.linear``), optimal transport (``sciml.solvers.ot``).

This package itself holds what both families share: the table of default tolerances by
dtype (:data:`DEFAULT_TOLERANCES`), read by every solver whose tolerance is ``None``, and
:func:`default_tol` to look a value up.
"""

from .._tolerances import DEFAULT_TOLERANCES, ToleranceDefaults, default_tol

__all__ = ["DEFAULT_TOLERANCES", "ToleranceDefaults", "default_tol"]
