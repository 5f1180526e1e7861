"""The model servers the operator polls, for clusters whose pods kwok only pretends to run.

kwok marks model-server pods Running and Ready, but no TF Serving answers behind them, and the operator
(rightly) never claims Ready without an answer. This loopback server answers TF Serving's status API for
every ServedModel at `http://127.0.0.1:<port>/<namespace>/<service>/<rest port>/v1/models/<model>` as the
pods behind that Service would once they loaded what they were given: it follows the Service's selector to
the Deployment, the Deployment's config volume to the ConfigMap the kubelet would mount, and reports the
versions its `models.config` asks for AVAILABLE (`specific`: those; `latest: N`: 1..N; `all`: 1)
(the operator's SERVEDMODEL_MODEL_SERVER_URL is `url_template`). A ServedModel whose REST port is not the
default is a test's own TF Serving test double on that loopback port: the request is relayed to it (and
nobody answers while none listens). A (namespace, service) put in `down` gets its connection closed
without an answer, as an unreachable server would.
"""

from __future__ import annotations

import http.server
import json
import re
import socket
import threading
import urllib.error
import urllib.request
from typing import Any

import requests

DEFAULT_REST_PORT = 8501
TRACK = "servedmodel.io/track"


def served_versions(models_config: str) -> list[int]:
    """The versions a TF Serving that loaded this models.config (and found them on disk) serves."""
    specific = re.search(r"specific\s*\{([^}]*)\}", models_config)
    if specific:
        return sorted(int(v) for v in re.findall(r"versions:\s*(\d+)", specific.group(1)))
    latest = re.search(r"latest\s*\{\s*num_versions:\s*(\d+)", models_config)
    return list(range(1, int(latest.group(1)) + 1)) if latest else [1]


def status_body(versions: list[int]) -> bytes:
    return json.dumps(
        {
            "model_version_status": [
                {"version": str(v), "state": "AVAILABLE", "status": {"error_code": "OK"}}
                for v in sorted(versions, reverse=True)
            ]
        }
    ).encode()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class ModelServerFleet:
    def __init__(self, cluster: Any) -> None:
        fleet = self
        self.api = requests.Session()
        self.api.trust_env = False
        self.api.verify = str(cluster.ca_file)
        self.api.headers["Authorization"] = f"Bearer {cluster.admin_token}"
        self.server = cluster.server
        self.down: set[tuple[str, str]] = set()  # (namespace, service) that do not answer
        self.requests = 0
        self._lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                with fleet._lock:
                    fleet.requests += 1
                parts = self.path.strip("/").split("/", 3)
                if len(parts) < 4:
                    self.send_error(404)
                    return
                namespace, service, port, rest = parts
                if (namespace, service) in fleet.down or not port.isdigit():
                    self._hang_up()
                elif int(port) != DEFAULT_REST_PORT:
                    self._relay(int(port), rest)
                else:
                    versions = fleet.versions(namespace, service)
                    if versions is None:
                        self._hang_up()  # no such Service, or no pod template behind it
                    else:
                        self._answer(200, status_body(versions))

            def _hang_up(self) -> None:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

            def _relay(self, port: int, rest: str) -> None:
                if not _listening(port):
                    self._hang_up()
                    return
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/{rest}", timeout=3) as resp:
                        self._answer(resp.status, resp.read())
                except urllib.error.HTTPError as exc:
                    self._answer(exc.code, exc.read())
                except OSError:
                    self._hang_up()

            def _answer(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a poller that went away mid-answer (an operator killed by a test) is no error here

        self._server = Server(("127.0.0.1", 0), Handler)
        self.url_template = f"http://127.0.0.1:{self._server.server_port}/{{namespace}}/{{service}}/{{port}}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def versions(self, namespace: str, service: str) -> list[int] | None:
        """What the pods behind `service` were told to serve (their ConfigMap), or None."""
        base = f"{self.server}/api/v1/namespaces/{namespace}"
        try:
            svc = self.api.get(f"{base}/services/{service}", timeout=5)
            if svc.status_code != 200:
                return None
            selector = svc.json()["spec"].get("selector") or {}
            items = self.api.get(
                f"{self.server}/apis/apps/v1/namespaces/{namespace}/deployments", timeout=5
            ).json()["items"]
            # The pods behind the Service: Deployments whose pod template the selector matches.
            deployments = [
                d
                for d in items
                if selector
                and selector.items() <= (d["spec"]["template"]["metadata"].get("labels") or {}).items()
            ]
            # The shared Service selects both tracks of a canary: answer as a stable pod would.
            deployments.sort(key=lambda d: d["spec"]["template"]["metadata"]["labels"].get(TRACK) == "canary")
            for deployment in deployments:
                for volume in deployment["spec"]["template"]["spec"].get("volumes") or []:
                    name = (volume.get("configMap") or {}).get("name")
                    if name:
                        cm = self.api.get(f"{base}/configmaps/{name}", timeout=5)
                        if cm.status_code == 200 and "models.config" in (cm.json().get("data") or {}):
                            return served_versions(cm.json()["data"]["models.config"])
        except (requests.RequestException, ValueError, KeyError):
            return None
        return None

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
