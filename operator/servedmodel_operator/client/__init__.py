"""A client that calls a ServedModel by name: `predict(name, instances, namespace=...)`, `status`,
`list_models`, and the `servedmodel` command (also a kubectl plugin: `kubectl servedmodel ...`)."""

from .api import list_models, predict, resolve, status
from .errors import (
    ClientError,
    ForbiddenError,
    ModelServerError,
    NotFoundError,
    NotReadyError,
    UsageError,
)

__all__ = [
    "ClientError",
    "ForbiddenError",
    "ModelServerError",
    "NotFoundError",
    "NotReadyError",
    "UsageError",
    "list_models",
    "predict",
    "resolve",
    "status",
]
