"""The client's pure parts: resolving a ServedModel to its Service, TF Serving's answers as arrays, the
service proxy's refusals as clear errors, the CLI's arguments and tables. No cluster: the e2e tests
(tests/e2e/test_client.py) call real model servers."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
import requests
from servedmodel_operator.client import cli, rest, tensors
from servedmodel_operator.client.errors import ForbiddenError, ModelServerError, NotReadyError, UsageError
from servedmodel_operator.client.resolve import target_of
from servedmodel_operator.client.routes import ProxyRoute
from servedmodel_operator.client.tables import list_table, status_text

NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.timezone.utc)
SM = {
    "metadata": {
        "name": "demo",
        "namespace": "ml",
        "generation": 3,
        "creationTimestamp": "2026-01-01T09:00:00Z",
    },
    "spec": {"versionLabels": {"stable": 1, "canary": 2}, "replicas": 2},
    "status": {
        "observedGeneration": 3,
        "modelName": "digits",
        "versionPolicy": "specific:1,2",
        "replicas": 2,
        "readyReplicas": 1,
        "updatedReplicas": 2,
        "endpoints": {"rest": "http://demo.ml.svc:9001/v1/models/digits", "grpc": "demo.ml.svc:9000"},
        "versions": [{"version": 2, "state": "AVAILABLE"}, {"version": 1, "state": "END", "error": "gone"}],
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "ReplicasNotReady",
                "message": "1 of 2 ready",
                "lastTransitionTime": "2026-01-01T11:58:00Z",
            },
        ],
    },
}


def response(code: int, body: object) -> requests.Response:
    resp = requests.Response()
    resp.status_code = code
    resp._content = json.dumps(body).encode()
    return resp


def test_target_from_status_endpoints_and_from_spec():
    t = target_of(SM)
    assert (t.service, t.model, t.rest_port, t.grpc_port) == ("demo", "digits", 9001, 9000)
    assert t.host == "demo.ml.svc"
    assert t.proxy_path("/v1/models/digits:predict") == (
        "/api/v1/namespaces/ml/services/demo:rest/proxy/v1/models/digits:predict"
    )
    fresh = {"metadata": {"name": "m", "namespace": "a"}, "spec": {"modelName": "x", "ports": {"rest": 80}}}
    t = target_of(fresh)
    assert (t.service, t.model, t.rest_port, t.grpc_port) == ("m", "x", 80, 8500)


def test_model_paths():
    assert rest.model_path("m") == "/v1/models/m"
    assert rest.model_path("m", version=3) == "/v1/models/m/versions/3"
    assert rest.model_path("m", label="a b") == "/v1/models/m/labels/a%20b"


def test_predictions_by_output_name_in_the_signature_dtype():
    single = tensors.rows_to_outputs([[1.5], [2.5]], ["dense_1"])
    assert single == {"dense_1": [[1.5], [2.5]]}
    several = tensors.rows_to_outputs([{"a": 1, "b": [2]}, {"a": 3, "b": [4]}], ["a", "b"])
    assert several == {"a": [1, 3], "b": [[2], [4]]}
    array = tensors.as_array([[1.5], [2.5]], "DT_FLOAT")
    assert array.dtype == np.float32 and array.shape == (2, 1)
    assert tensors.as_array([1, 2], "DT_INT64").dtype == np.int64
    assert tensors.jsonable({"x": np.arange(3, dtype=np.float32)}) == {"x": [0.0, 1.0, 2.0]}


def test_instances_by_input_name():
    assert tensors.instances_to_inputs([[1, 2]], ["x"]) == {"x": [[1, 2]]}
    assert tensors.instances_to_inputs([{"a": 1, "b": 2}], ["a", "b"]) == {"a": [1], "b": [2]}
    with pytest.raises(ValueError, match="several inputs"):
        tensors.instances_to_inputs([[1, 2]], ["a", "b"])
    with pytest.raises(ValueError, match=r"lack the inputs \['b'\]"):
        tensors.instances_to_inputs([{"a": 1}], ["a", "b"])


def test_tf_serving_errors_are_shown_as_they_are():
    msg = (
        "Failed to process element: 0 of 'instances' list. JSON Value: \"x\" Type: String is not of "
        "expected type: float"
    )
    with pytest.raises(ModelServerError) as err:
        rest.answer(response(400, {"error": msg}))
    assert str(err.value) == msg and err.value.status == 400 and err.value.exit_code == 4


class FakeApi:
    def __init__(self, resp: requests.Response):
        self.resp, self.calls = resp, []

    def request(self, method, path, body=None, timeout=0):
        self.calls.append((method, path, body))
        return self.resp


def status_body(code: int, message: str, details: dict | None = None) -> dict:
    return {"kind": "Status", "status": "Failure", "message": message, "code": code, "details": details or {}}


def test_proxy_refusals_become_clear_errors():
    t = target_of(SM)
    forbidden = status_body(
        403, 'services "demo" is forbidden: User "u" cannot create resource "services/proxy"'
    )
    with pytest.raises(ForbiddenError) as err:
        ProxyRoute(FakeApi(response(403, forbidden)), t).send("POST", "/v1/models/digits:predict", {})
    assert 'User "u" cannot create resource "services/proxy"' in str(err.value)
    assert "`create` on `services/proxy`" in str(err.value) and err.value.exit_code == 5
    empty = status_body(503, 'no endpoints available for service "demo"')
    with pytest.raises(NotReadyError, match='no endpoints available for service "demo"') as err:
        ProxyRoute(FakeApi(response(503, empty)), t).send("GET", "/v1/models/digits/metadata")
    assert err.value.exit_code == 6
    # The model server's own 404 (no Kubernetes Status) passes through for rest.answer to show.
    api = FakeApi(response(404, {"error": "Servable not found for request: Specific(digits, 9)"}))
    resp = ProxyRoute(api, t).send("POST", "/v1/models/digits/versions/9:predict", {"instances": [1]})
    assert resp.status_code == 404
    assert (
        api.calls[0][1]
        == "/api/v1/namespaces/ml/services/demo:rest/proxy/v1/models/digits/versions/9:predict"
    )


def test_cli_instances_argument(tmp_path):
    assert cli._instances("[[1, 2]]") == [[1, 2]]
    (tmp_path / "req.json").write_text('{"instances": [{"a": 1}]}')
    assert cli._instances(f"@{tmp_path / 'req.json'}") == [{"a": 1}]
    for bad, match in (
        ("[1,", "not JSON"),
        ("{}", "non-empty JSON list"),
        ("@/nonexistent/x", "cannot read"),
    ):
        with pytest.raises(UsageError, match=match):
            cli._instances(bad)


def test_cli_refuses_grpc_through_the_api_server(monkeypatch, capsys):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    code = cli.main(["predict", "demo", "--instances", "[[1]]", "--grpc"])
    assert code == 2
    assert "gRPC cannot go through the Kubernetes API server" in capsys.readouterr().err
    code = cli.main(["predict", "demo", "--instances", "nope"])
    assert code == 2 and "--instances is not JSON" in capsys.readouterr().err


def test_status_and_list_tables():
    text = status_text(SM, NOW)
    lines = text.splitlines()
    assert "ServedModel:  ml/demo" in lines[0]
    assert any(line.split()[:3] == ["2", "AVAILABLE", "canary"] for line in lines)
    assert any(line.split() == ["1", "END", "stable", "gone"] for line in lines)
    assert any(line.split()[:5] == ["Ready", "False", "ReplicasNotReady", "2m", "1"] for line in lines)
    assert "http://demo.ml.svc:9001/v1/models/digits" in text and "demo.ml.svc:9000" in text
    table = list_table([SM], all_namespaces=True, now=NOW).splitlines()
    assert table[0].split() == ["NAMESPACE", "NAME", "MODEL", "READY", "REASON", "POLICY", "SERVING",
                                "REPLICAS", "AGE"]  # fmt: skip
    assert table[1].split() == [
        "ml",
        "demo",
        "digits",
        "False",
        "ReplicasNotReady",
        "specific:1,2",
        "2",
        "1/2",
        "3h",
    ]


def test_cli_prints_float32_outputs_as_their_shortest_decimals():
    values = np.array([[3.9, 3.2, 1.7]], dtype=np.float32)
    assert json.dumps(cli.plain(values)) == "[[3.9, 3.2, 1.7]]"
    assert np.array_equal(np.asarray(cli.plain(values), dtype=np.float32), values)  # the same float32s
    assert cli.plain(np.array([1, 2], dtype=np.int64)) == [1, 2]
