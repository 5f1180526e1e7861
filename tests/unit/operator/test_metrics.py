"""The operator's own metrics move with the work it does."""

from __future__ import annotations

import asyncio
import socket
import urllib.request

from prometheus_client import REGISTRY
from servedmodel_operator import metrics
from servedmodel_operator.workqueue import Retry, WorkQueue


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_reconcile_results_and_durations_are_counted():
    before_ok = sample("servedmodel_reconcile_total", result="ok")
    before_retry = sample("servedmodel_reconcile_total", result="retry")
    before_count = sample("servedmodel_reconcile_duration_seconds_count")

    async def scenario():
        async def handler(key):
            if key == "bad":
                raise Retry("later", delay=10)

        q = WorkQueue(handler, workers=2)
        q.start()
        q.add("good")
        q.add("bad")
        await asyncio.sleep(0.05)
        await q.stop()

    asyncio.run(scenario())
    assert sample("servedmodel_reconcile_total", result="ok") == before_ok + 1
    assert sample("servedmodel_reconcile_total", result="retry") == before_retry + 1
    assert sample("servedmodel_reconcile_duration_seconds_count") == before_count + 2


def test_metrics_endpoint_serves_them():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    metrics.serve(port, address="127.0.0.1")
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert "servedmodel_reconcile_total" in body and "servedmodel_api_requests_total" in body
