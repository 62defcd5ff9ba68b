"""Solvers: optimal transport (``sciml.solvers.ot``); linear systems arrive with their issue."""
