"""Reference §7 / checklist 8: the Prometheus endpoint."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests
from tfsd_helpers import add_version


def _monitoring(tmp_path: Path, text: str) -> str:
    p = tmp_path / "monitoring.config"
    p.write_text(text)
    return str(p)


@pytest.fixture
def monitored(make_double, base: Path, tmp_path: Path):
    add_version(base, 1)
    mon = _monitoring(tmp_path, "prometheus_config {\n  enable: true\n}\n")
    return make_double(model_name="m", model_base_path=str(base), monitoring_config_file=mon).start()


def test_metrics_exposition(monitored) -> None:
    u = monitored.rest_url
    for _ in range(3):
        assert requests.get(f"{u}/v1/models/m", timeout=5).status_code == 200
    requests.get(f"{u}/v1/models/nope", timeout=5)
    requests.post(f"{u}/v1/models/m:predict", json={"instances": [1.0]}, timeout=5)
    r = requests.get(f"{u}/monitoring/prometheus/metrics", timeout=5)
    assert r.status_code == 200 and r.headers["Content-Type"] == "text/plain"
    text = r.text
    assert text.endswith("\n") and "# HELP" not in text
    assert "# TYPE :tensorflow:serving:request_count counter" in text
    assert ':tensorflow:serving:request_count{model_name="m",status="OK"} 4\n' in text
    assert ':tensorflow:serving:request_count{model_name="nope",status="NOT_FOUND"} 1\n' in text
    assert "# TYPE :tensorflow:serving:request_latency histogram" in text
    assert re.search(
        r':tensorflow:serving:request_latency_bucket\{model_name="m",API="predict",'
        r'entrypoint="REST",le="\+Inf"\} 1\n',
        text,
    )
    path = monitored.manager.version_states("m")[1].path
    assert f':tensorflow:cc:saved_model:load_attempt_count{{model_path="{path}",status="success"}} 1' in text
    for line in text.splitlines():
        assert line.startswith("# TYPE ") or re.fullmatch(r":[a-zA-Z0-9_:]+\{[^}]*\} [0-9.e+-]+", line), line


def test_metrics_path_with_query_is_400(monitored) -> None:
    r = requests.get(f"{monitored.rest_url}/monitoring/prometheus/metrics?x", timeout=5)
    assert r.status_code == 400 and r.headers["Content-Type"] == "text/plain"
    assert r.text == (
        "Unexpected path: /monitoring/prometheus/metrics?x. Should be /monitoring/prometheus/metrics"
    )


def test_custom_metrics_path(make_double, base: Path, tmp_path: Path) -> None:
    add_version(base, 1)
    mon = _monitoring(tmp_path, 'prometheus_config { enable: true path: "/metrics" }')
    d = make_double(model_name="m", model_base_path=str(base), monitoring_config_file=mon).start()
    assert requests.get(f"{d.rest_url}/metrics", timeout=5).status_code == 200
    assert requests.get(f"{d.rest_url}/monitoring/prometheus/metrics", timeout=5).status_code == 404


@pytest.mark.parametrize("text", [None, "prometheus_config { enable: false }"])
def test_metrics_off_without_enabled_config(
    make_double, base: Path, tmp_path: Path, text: str | None
) -> None:
    add_version(base, 1)
    mon = None if text is None else _monitoring(tmp_path, text)
    d = make_double(model_name="m", model_base_path=str(base), monitoring_config_file=mon).start()
    r = requests.get(f"{d.rest_url}/monitoring/prometheus/metrics", timeout=5)
    assert r.status_code == 404 and r.text.startswith("<HTML>")


def test_metrics_need_rest(make_double, base: Path, tmp_path: Path) -> None:
    add_version(base, 1)
    mon = _monitoring(tmp_path, "prometheus_config { enable: true }")
    d = make_double(
        model_name="m", model_base_path=str(base), monitoring_config_file=mon, rest_api_port=None
    ).start()
    assert d.prometheus_path is None and d.rest_port is None


def test_invalid_monitoring_config_fails_startup(make_double, base: Path, tmp_path: Path) -> None:
    from tfserving_double import StartupError

    add_version(base, 1)
    mon = _monitoring(tmp_path, "prometheus_config { enabled: true }")
    with pytest.raises(StartupError) as err:
        make_double(model_name="m", model_base_path=str(base), monitoring_config_file=mon).start()
    assert err.value.message == f"Invalid protobuf file: '{mon}'"
