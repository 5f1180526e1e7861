"""The operator's own Prometheus metrics: what it reconciled, how long it took, what it asked of whom."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RECONCILES = Counter(
    "servedmodel_reconcile_total", "Reconciles of ServedModels, by result (ok, retry, error).", ["result"]
)
RECONCILE_SECONDS = Histogram(
    "servedmodel_reconcile_duration_seconds",
    "Time one reconcile of a ServedModel took.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
API_REQUESTS = Counter(
    "servedmodel_api_requests_total",
    "Requests the operator sent to the Kubernetes API (beyond kopf's watches), by method, kind and code.",
    ["method", "kind", "code"],
)
MODEL_SERVER_REQUESTS = Counter(
    "servedmodel_model_server_requests_total",
    "Status requests sent to TF Serving model servers, by outcome (ok, not_found, unreachable).",
    ["outcome"],
)
EVENTS = Counter(
    "servedmodel_events_total",
    "Kubernetes Events by outcome (posted, counted on an existing one, dropped_rate_limited, "
    "dropped_queue_full, failed).",
    ["outcome"],
)
BACKGROUND_RESTARTS = Counter(
    "servedmodel_background_restarts_total",
    "Background loops (reconcile workers, resync, model-server poller, event sender) restarted after they "
    "failed, by task.",
    ["task"],
)
QUEUE_DEPTH = Gauge("servedmodel_workqueue_depth", "ServedModels waiting for or in a reconcile.")


def serve(port: int, address: str = "0.0.0.0") -> None:
    """Expose /metrics on its own port (0: not at all). A port in use is an operator mistake worth a clear
    exit rather than a silent lack of metrics."""
    if not port:
        return
    try:
        start_http_server(port, addr=address)
    except OSError as exc:
        raise SystemExit(f"cannot serve metrics on port {port}: {exc}") from None
