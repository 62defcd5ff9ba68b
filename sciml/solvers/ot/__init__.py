"""Entropic optimal transport: log-domain Sinkhorn and Sinkhorn-Newton-Sparse."""

from ._common import OTError, OTResult, OTStatus
from .sinkhorn import Sinkhorn, sinkhorn
from .sns import SNS, sns

__all__ = ["SNS", "OTError", "OTResult", "OTStatus", "Sinkhorn", "sinkhorn", "sns"]
