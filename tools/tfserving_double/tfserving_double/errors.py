"""TF status codes and their HTTP mapping (reference §1.8), and the error type every layer raises."""

from __future__ import annotations

CODES: dict[str, int] = {
    "OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4, "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8, "FAILED_PRECONDITION": 9,
    "ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12, "INTERNAL": 13, "UNAVAILABLE": 14,
    "DATA_LOSS": 15, "UNAUTHENTICATED": 16,
}

# ToHTTPStatusCode, http_server.cc (§1.8); anything else -> 500.
HTTP_FOR_CODE: dict[str, int] = {
    "OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400, "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400, "ABORTED": 409, "OUT_OF_RANGE": 400, "UNIMPLEMENTED": 501, "INTERNAL": 500,
    "UNAVAILABLE": 503, "DATA_LOSS": 500, "UNAUTHENTICATED": 401,
}


STATES = ("START", "LOADING", "AVAILABLE", "UNLOADING", "END")  # ModelVersionStatus.State names (§1.4)
INT64_MAX = 2**63 - 1


class TFError(Exception):
    """A TF Status that is not OK: a code name from CODES plus the message."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message

    def __str__(self) -> str:  # absl::Status::ToString style, e.g. "NOT_FOUND: ..."
        return f"{self.code}: {self.message}"


class StartupError(TFError):
    """Raised by ``TFServingDouble.start`` where the real server prints ``Failed to start server``."""


def invalid(message: str) -> TFError:
    return TFError("INVALID_ARGUMENT", message)



def servable_request(name: str, version: int | None) -> str:
    """ServableRequest::DebugString (§1.6)."""
    return f"Latest({name})" if version is None else f"Specific({name}, {version})"
