"""The HTTP listener: libevent + EvHTTPServer behaviour around the REST API (reference §1.1-§1.3, §7).

Exact-path handlers first (Prometheus only), then ``(?i)/v1/.*``, else libevent's 404 page; methods
libevent does not allow get 501; CORS preflight and headers; request metrics.
"""

from __future__ import annotations

import http.server
import re
import socketserver
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .server import TFServingDouble

REST_PATH_RE = re.compile(r"/v1/.*", re.I)
ALLOWED_METHODS = {"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"}


def libevent_error_page(code: int, reason: str) -> bytes:
    """evhttp_send_error's HTML body (§1.2)."""
    return (f"<HTML><HEAD>\n<TITLE>{code} {reason}</TITLE>\n</HEAD><BODY>\n<H1>{reason}</H1>\n"
            f"</BODY></HTML>\n").encode()



class RestRequestHandler(http.server.BaseHTTPRequestHandler):
    """libevent + EvHTTPServer dispatch (§1.2): exact URI handlers, then ``(?i)/v1/.*``, else 404 HTML."""

    protocol_version = "HTTP/1.1"
    server: RestServer

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):  # every method reaches one dispatcher, like libevent's callback
            return self._serve
        raise AttributeError(name)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def send_response(self, code: int, message: str | None = None) -> None:
        """No ``Server`` header (libevent sends none); keep ``Date``."""
        self.send_response_only(code, message)
        self.send_header("Date", self.date_time_string())

    def _raw_target(self) -> str:
        parts = self.requestline.split()
        return parts[1] if len(parts) >= 2 else self.path

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _reply(self, status: int, body: bytes, headers: list[tuple[str, str]]) -> None:
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _html_error(self, status: int, reason: str) -> None:
        # libevent's default Content-Type for its own pages (UNCONFIRMED in the reference).
        headers = [("Content-Type", "text/html; charset=ISO-8859-1")]
        self._reply(status, libevent_error_page(status, reason), headers)

    def _serve(self) -> None:
        double = self.server.double
        body = self._read_body()
        if self.command not in ALLOWED_METHODS:
            self._html_error(501, "Not Implemented")
            return
        target = self._raw_target()
        metrics_path = double.prometheus_path
        if metrics_path is not None and target.split("?", 1)[0].split("#", 1)[0] == metrics_path:
            self._metrics(target, metrics_path)
        elif REST_PATH_RE.fullmatch(target):
            self._rest(target, body)
        else:
            self._html_error(404, "Not Found")

    def _metrics(self, target: str, metrics_path: str) -> None:
        """ProcessPrometheusRequest (§7): the full path incl. query must equal the configured one."""
        headers = [("Content-Type", "text/plain")]
        if target != metrics_path:
            self._reply(400, f"Unexpected path: {target}. Should be {metrics_path}".encode(), headers)
        else:
            self._reply(200, self.server.double.metrics.render().encode(), headers)

    def _cors_headers(self) -> list[tuple[str, str]]:
        if not self.server.double.options.rest_api_enable_cors_support:
            return []
        return [("Access-Control-Allow-Origin", "*"), ("Access-Control-Allow-Methods", "POST, GET"),
                ("Access-Control-Allow-Headers", "Content-Type")]

    def _rest(self, target: str, body: bytes) -> None:
        double = self.server.double
        if self.command == "OPTIONS":  # CORS preflight: handler not called, empty body (§1.3)
            ok = re.search(r"https?://", self.headers.get("Origin", "")) is not None
            self._reply(200 if ok else 400, b"", self._cors_headers())
            return
        started = time.monotonic()
        reply = double.rest.handle(self.command, target, body)
        labels = {"model_name": reply.model_name, "status": reply.code}
        double.metrics.inc("/tensorflow/serving/request_count", labels)
        if reply.code == "OK" and reply.api in ("predict", "classify", "regress"):
            double.metrics.observe("/tensorflow/serving/request_latency",
                                   {"model_name": reply.model_name, "API": reply.api, "entrypoint": "REST"},
                                   (time.monotonic() - started) * 1e6)
        headers = [("Content-Type", "application/json"), *self._cors_headers()]
        self._reply(reply.status, reply.body.encode("utf-8"), headers)


class RestServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    double: TFServingDouble

