"""What can go wrong when calling a ServedModel, each with the exit code the CLI returns for it.

The message is meant for a person: it says what happened and what to do. TF Serving's own error text is
passed through unchanged (`ModelServerError`), because that is what users search for.
"""

from __future__ import annotations


class ClientError(Exception):
    """Base of every error the client reports; `exit_code` is the CLI's exit status for it."""

    exit_code = 1


class UsageError(ClientError):
    """The request cannot be made as asked (bad --instances, gRPC through the API server, ...)."""

    exit_code = 2


class NotFoundError(ClientError):
    """No such ServedModel in the namespace (or the ServedModel API is not installed)."""

    exit_code = 3


class ModelServerError(ClientError):
    """The model server answered with an error: bad input, an unknown version or label, ... Its message
    is TF Serving's, as it is; `status` is the HTTP status (REST) or the gRPC status code name."""

    exit_code = 4

    def __init__(self, message: str, status: int | str):
        super().__init__(message)
        self.status = status


class ForbiddenError(ClientError):
    """The API server refused the user's credentials (401) or the user lacks a right (403)."""

    exit_code = 5


class NotReadyError(ClientError):
    """The ServedModel exists but nothing answers for it yet: no ready model server behind its Service."""

    exit_code = 6
