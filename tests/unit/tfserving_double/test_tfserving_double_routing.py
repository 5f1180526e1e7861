"""Reference §1.2, §1.3, §1.8 / checklist 6, 7: routing, libevent pages, headers, status mapping."""

from __future__ import annotations

import socket

import pytest
import requests
import tfserving_double as tsd

NOT_FOUND_PAGE = (
    "<HTML><HEAD>\n<TITLE>404 Not Found</TITLE>\n</HEAD><BODY>\n<H1>Not Found</H1>\n</BODY></HTML>\n"
)


def _raw(port: int, request: bytes) -> bytes:
    """Send bytes as-is (requests would normalise the path) and read the whole response."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/v1/models/m"),
        ("GET", "/v1/models/m:predict"),
        ("POST", "/v1/models/m"),
        ("DELETE", "/v1/models/m"),
        ("PATCH", "/v1/models/m"),
        ("GET", "/v1/models/m/"),
        ("POST", "/v1/models/m:PREDICT"),
        ("GET", "/v1/other"),
        ("GET", "/v1/models/m/versions/x"),
    ],
)
def test_malformed_under_v1(shared, method: str, path: str) -> None:
    r = requests.request(method, shared.rest_url + path, timeout=5)
    assert r.status_code == 400
    assert r.headers["Content-Type"] == "application/json"
    assert r.json() == {"error": f"Malformed request: {method} {path}"}


def test_list_models_is_400(shared) -> None:
    r = requests.get(f"{shared.rest_url}/v1/models", timeout=5)
    assert r.status_code == 400 and r.json() == {"error": "Missing model name in request."}


def test_v1_prefix_is_case_insensitive(shared) -> None:
    r = requests.get(f"{shared.rest_url}/V1/MODELS/m", timeout=5)
    assert r.status_code == 200 and r.json()["model_version_status"][0]["version"] == "1"
    meta_upper = requests.get(f"{shared.rest_url}/v1/models/m/METADATA", timeout=5)
    assert "model_version_status" in meta_upper.json(), "subresource compared case-sensitively: status"


def test_query_string_is_part_of_the_model_name(shared) -> None:
    r = requests.get(f"{shared.rest_url}/v1/models/m?x=1", timeout=5)
    assert r.status_code == 404 and r.json() == {"error": "Could not find any versions of model m?x=1"}


def test_model_name_is_url_decoded(shared) -> None:
    r = requests.get(f"{shared.rest_url}/v1/models/%6d", timeout=5)
    assert r.status_code == 200 and r.json()["model_version_status"][0]["version"] == "1"


@pytest.mark.parametrize("path", ["/", "/v1", "/v2/models/m", "/healthz", "/monitoring/prometheus/metrics"])
@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
def test_outside_v1_is_libevent_404(shared, path: str, method: str) -> None:
    r = requests.request(method, shared.rest_url + path, timeout=5)
    assert r.status_code == 404
    assert r.text == NOT_FOUND_PAGE
    assert r.headers["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("method", [b"TRACE", b"CONNECT"])
def test_trace_and_connect_501(shared, method: bytes) -> None:
    resp = _raw(shared.rest_port, method + b" /v1/models/m HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = resp.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 501")
    assert body.decode() == (
        "<HTML><HEAD>\n<TITLE>501 Not Implemented</TITLE>\n</HEAD><BODY>\n"
        "<H1>Not Implemented</H1>\n</BODY></HTML>\n"
    )


def test_version_overflow_is_400_with_empty_body(shared) -> None:
    for path in ("/v1/models/m/versions/9223372036854775808", "/v1/models/m/versions/99999999999999999999"):
        r = requests.get(shared.rest_url + path, timeout=5)
        assert r.status_code == 400 and r.text == ""
        assert r.headers["Content-Type"] == "application/json"
    fits = requests.get(f"{shared.rest_url}/v1/models/m/versions/9223372036854775807", timeout=5)
    assert fits.status_code == 404


def test_raw_double_slash_not_normalised(shared) -> None:
    resp = _raw(shared.rest_port, b"GET //v1/models/m HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert resp.startswith(b"HTTP/1.1 404") and resp.endswith(NOT_FOUND_PAGE.encode())


def test_head_gets_headers_only(shared) -> None:
    r = requests.head(f"{shared.rest_url}/v1/models/m", timeout=5)
    assert r.status_code == 400 and r.headers["Content-Type"] == "application/json" and r.content == b""


def test_options_preflight(make_double, base) -> None:
    from tfsd_helpers import add_version

    add_version(base, 1)
    d = make_double(model_name="m", model_base_path=str(base), rest_api_enable_cors_support=True).start()
    ok = requests.options(f"{d.rest_url}/v1/models/m", headers={"Origin": "https://a.example"}, timeout=5)
    assert ok.status_code == 200 and ok.content == b""
    assert ok.headers["Access-Control-Allow-Origin"] == "*"
    bad = requests.options(f"{d.rest_url}/v1/models/m", timeout=5)
    assert bad.status_code == 400 and bad.content == b""
    get = requests.get(f"{d.rest_url}/v1/models/m", timeout=5)
    assert get.headers["Access-Control-Allow-Methods"] == "POST, GET"
    assert get.headers["Access-Control-Allow-Headers"] == "Content-Type"


def test_no_cors_headers_by_default(shared) -> None:
    r = requests.get(f"{shared.rest_url}/v1/models/m", timeout=5)
    assert "Access-Control-Allow-Origin" not in r.headers and "Server" not in r.headers


def test_status_to_http_mapping_matches_reference() -> None:
    expected = {
        "OK": 200,
        "CANCELLED": 499,
        "UNKNOWN": 500,
        "INVALID_ARGUMENT": 400,
        "DEADLINE_EXCEEDED": 504,
        "NOT_FOUND": 404,
        "ALREADY_EXISTS": 409,
        "PERMISSION_DENIED": 403,
        "RESOURCE_EXHAUSTED": 429,
        "FAILED_PRECONDITION": 400,
        "ABORTED": 409,
        "OUT_OF_RANGE": 400,
        "UNIMPLEMENTED": 501,
        "INTERNAL": 500,
        "UNAVAILABLE": 503,
        "DATA_LOSS": 500,
        "UNAUTHENTICATED": 401,
    }
    assert tsd.HTTP_FOR_CODE == expected
    from tensorflow.core.protobuf import error_codes_pb2

    assert {k: error_codes_pb2.Code.Value(k) for k in tsd.CODES} == tsd.CODES


def test_keep_alive_connection_serves_several_requests(shared) -> None:
    with requests.Session() as s:
        codes = [s.get(f"{shared.rest_url}/v1/models/{n}", timeout=5).status_code for n in ("m", "x", "m")]
    assert codes == [200, 404, 200]
