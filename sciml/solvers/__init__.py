"""Solvers: linear systems (``sciml.solvers.linear``), optimal transport (``sciml.solvers.ot``)."""
