"""The server: start-up order and failures (reference §2), the listeners, the polling loops and logs.

``TFServingDouble`` is the in-process API the tests use; ``cli`` runs the same class as a program.
"""

from __future__ import annotations

import datetime as _dt
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from .errors import StartupError, TFError, invalid
from .http_server import RestRequestHandler, RestServer
from .manager import ModelManager
from .metrics import Metrics
from .model_config import ModelSpecConfig, load_model_config_file, validate_models
from .options import ALL_INTERFACES, LOOPBACK, ServerOptions
from .protos import api_pb2, local_message_classes, parse_proto_text_file
from .rest_api import RestApi

if TYPE_CHECKING:
    import grpc

DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"  # §7

def pick_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]



class TFServingDouble:
    """In-process TF Serving double, bound to 127.0.0.1 unless ``bind_address`` says otherwise.

    Ports: ``port``/``rest_api_port`` 0 pick a free port now (so a test can check it is still closed during
    start-up); ``rest_api_port=None`` turns REST off. Both only open once start-up has succeeded (§2).
    Use ``start()`` (blocking until ready, raising ``StartupError``) or ``start(wait=False)`` +
    ``wait_ready()``; always ``stop()`` (or use as a context manager).
    """

    def __init__(self, *, model_name: str | None = None, model_base_path: str | None = None,
                 model_config_file: str | None = None, port: int = 0, rest_api_port: int | None = 0,
                 file_system_poll_wait_seconds: float = 1.0, model_config_file_poll_wait_seconds: float = 0,
                 allow_version_labels_for_unavailable_models: bool = False,
                 monitoring_config_file: str | None = None, enable_batching: bool = False,
                 batching_parameters_file: str | None = None, load_delay_seconds: float = 0.0,
                 max_num_load_retries: int = 5, load_retry_interval_seconds: float = 60.0,
                 rest_api_enable_cors_support: bool = False, grpc_socket_path: str = "",
                 bind_address: str = LOOPBACK, log_stream: TextIO | None = None,
                 options: ServerOptions | None = None):
        if options is None:
            options = ServerOptions(
                port=port or pick_free_port(), grpc_socket_path=grpc_socket_path,
                rest_api_port=None if rest_api_port is None else (rest_api_port or pick_free_port()),
                rest_api_enable_cors_support=rest_api_enable_cors_support,
                model_name=model_name or "default", model_base_path=model_base_path or "",
                model_config_file=model_config_file or "",
                model_config_file_poll_wait_seconds=model_config_file_poll_wait_seconds,
                file_system_poll_wait_seconds=file_system_poll_wait_seconds,
                max_num_load_retries=max_num_load_retries,
                load_retry_interval_seconds=load_retry_interval_seconds,
                enable_batching=enable_batching, batching_parameters_file=batching_parameters_file or "",
                allow_version_labels_for_unavailable_models=allow_version_labels_for_unavailable_models,
                monitoring_config_file=monitoring_config_file or "", load_delay_seconds=load_delay_seconds,
                bind_address=bind_address)
        self.options = options
        self.logs: list[str] = []
        self._log_stream = log_stream
        self._log_lock = threading.Lock()
        self.metrics = Metrics()
        self.manager = ModelManager(options, self._log, self.metrics)
        self.rest = RestApi(self.manager)
        self.prometheus_path: str | None = None
        self._ready = threading.Event()
        self._done = threading.Event()  # start-up finished, either way
        self.startup_error: StartupError | None = None
        self._threads: list[threading.Thread] = []
        self._http: RestServer | None = None
        self._grpc: grpc.Server | None = None

    # -- public API ------------------------------------------------------------------------------------------

    @property
    def grpc_port(self) -> int:
        return self.options.port

    @property
    def rest_port(self) -> int | None:
        return self.options.rest_api_port

    @property
    def rest_url(self) -> str:
        host = self.options.bind_address
        host = LOOPBACK if host in (ALL_INTERFACES, "::", "") else host
        return f"http://{host}:{self.options.rest_api_port}"

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def start(self, *, wait: bool = True, timeout: float | None = 60.0) -> TFServingDouble:
        """Begin start-up in a background thread; with ``wait`` block until ready (raise on failure)."""
        self._spawn(self._startup, "startup")
        if wait and not self.wait_ready(timeout):
            if self.startup_error is not None:
                raise self.startup_error
            raise TimeoutError(f"TF Serving double not ready after {timeout} s (ports stay closed)")
        return self

    def wait_ready(self, timeout: float | None = None) -> bool:
        """True once serving; False on start-up failure (see ``startup_error``) or timeout."""
        self._done.wait(timeout)
        return self._ready.is_set()

    def stop(self) -> None:
        self.manager.stopping.set()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._grpc is not None:
            self._grpc.stop(None)
        for t in self._threads:
            t.join(timeout=5)

    def __enter__(self) -> TFServingDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def poll_now(self) -> None:
        """Test helper: run one file-system poll immediately (the real server only polls on its timer)."""
        self.manager.poll_once()

    def reload_config_now(self) -> TFError | None:
        """Test helper: one ``--model_config_file`` reload now; returns the error it logged, if any."""
        return self._reload_config()

    def wait_for_state(self, name: str, version: int, state: str, timeout: float = 10.0) -> bool:
        return self.manager.wait_for_state(name, version, state, timeout)

    # -- start-up (§2) ---------------------------------------------------------------------------------------

    def _startup(self) -> None:
        try:
            self._build_and_start()
            self._ready.set()
        except TFError as e:
            self.startup_error = StartupError(e.code, e.message)
            self.manager.stopping.set()
        finally:
            self._done.set()

    def _initial_models(self) -> list[ModelSpecConfig]:
        o = self.options
        if not o.model_base_path and not o.model_config_file:
            raise invalid("Both server_options.model_base_path and server_options.model_config_file are "
                           "empty!")
        if o.model_config_file:
            return load_model_config_file(o.model_config_file)
        models = [ModelSpecConfig(name=o.model_name, base_path=o.model_base_path, platform="tensorflow")]
        validate_models(models)
        return models

    def _validate_side_configs(self) -> None:
        o, local = self.options, local_message_classes()
        if o.batching_parameters_file and not o.enable_batching:
            raise invalid("server_options.batching_parameters_file is set without setting "
                           "server_options.enable_batching to true.")
        if o.batching_parameters_file:
            parse_proto_text_file(o.batching_parameters_file, local["BatchingParameters"]())
        if o.monitoring_config_file:
            mon = parse_proto_text_file(o.monitoring_config_file, local["MonitoringConfig"]())
            if mon.prometheus_config.enable and o.rest_api_port:
                self.prometheus_path = mon.prometheus_config.path or DEFAULT_PROMETHEUS_PATH

    def _build_and_start(self) -> None:
        o = self.options
        if not o.port and not o.grpc_socket_path:
            raise invalid("At least one of server_options.grpc_port or server_options.grpc_socket_path "
                           "must be set.")
        models = self._initial_models()
        self._validate_side_configs()
        self.manager.apply_config(models, initial=True)
        if o.file_system_poll_wait_seconds >= 0:
            self._spawn(self._fs_poll_loop, "fs-poll")
        failed = self.manager.wait_models([m.name for m in models])
        if failed is None:
            raise TFError("CANCELLED", "Server stopped during start-up")
        if failed:
            for name in failed:
                self._log_failed(name)
            raise TFError("UNKNOWN", "Some models did not become available: {" + ", ".join(failed) + "}")
        api_pb2()  # TF-dependent protos (normally imported by the first load) before ports open
        self._log("I", "server_core.cc", "Finished adding/updating models")
        if o.model_config_file and o.model_config_file_poll_wait_seconds > 0:
            self._spawn(self._config_poll_loop, "config-poll")
        from .grpc_service import start_grpc_server  # imports TensorFlow's protos, loaded by now

        self._grpc = start_grpc_server(self.manager, o.port, o.grpc_socket_path, o.bind_address,
                                       o.grpc_max_threads)
        self._log("I", "server.cc", f"Running gRPC ModelServer at {o.bind_address}:{o.port} ...")
        self._start_http()

    def _log_failed(self, name: str) -> None:
        for v, rec in sorted(self.manager.version_states(name).items(), reverse=True):
            if rec.state == "END" and rec.error_code != "OK":
                self._log("E", "server_core.cc", f"Servable {{name: {name} version: {v}}} cannot be loaded: "
                                                 f"{rec.error_code}: {rec.error_message}")
                return

    def _start_http(self) -> None:
        """Failures here are logged, never fatal (§1.1)."""
        o = self.options
        if not o.rest_api_port:
            return
        if o.rest_api_port == o.port:
            self._log("E", "server.cc", "server_options.http_port cannot be same as grpc_port. Please use a "
                                        "different port for HTTP/REST API. Skipped exporting HTTP/REST API.")
            return
        try:
            server = RestServer((o.bind_address, o.rest_api_port), RestRequestHandler)
        except OSError:
            self._log("E", "server.cc", f"Failed to start HTTP Server at localhost:{o.rest_api_port}")
            return
        server.double = self
        self._http = server
        self._spawn(lambda: server.serve_forever(poll_interval=0.05), "http")
        self._log("I", "server.cc", f"Exporting HTTP/REST API at:localhost:{o.rest_api_port} ...")

    # -- background loops -----------------------------------------------------------------------------------

    def _fs_poll_loop(self) -> None:
        """PeriodicFunction: first poll now; 0 = only once (negative never starts this loop)."""
        interval = self.options.file_system_poll_wait_seconds
        while not self.manager.stopping.is_set():
            self.manager.poll_once()
            if interval == 0 or self.manager.stopping.wait(interval):
                return

    def _config_poll_loop(self) -> None:
        interval = self.options.model_config_file_poll_wait_seconds
        while not self.manager.stopping.wait(interval):
            self._reload_config()

    def _reload_config(self) -> TFError | None:
        """PollFilesystemAndReloadConfig: re-read, ReloadConfig, block until added models are available."""
        try:
            models = load_model_config_file(self.options.model_config_file)
        except TFError as e:
            self._log("E", "server.cc", f"Failed to read ModelServerConfig file: {e}")
            return e
        try:
            added = self.manager.apply_config(models, initial=False)
        except TFError as e:
            self._log("E", "server.cc", f"Failed to reload config: {e}")
            return e
        self.manager.poll_once()
        if added:
            self.manager.wait_models(added)
        return None

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        t = threading.Thread(target=target, name=f"tfserving-double-{name}", daemon=True)
        self._threads.append(t)
        t.start()

    def _log(self, level: str, source: str, message: str) -> None:
        """glog-like line: ``2024-01-02 03:04:05.678901: W tensorflow_serving/...:0] message``."""
        stamp = _dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f")
        line = f"{stamp}: {level} {source}:0] {message}"
        with self._log_lock:
            self.logs.append(line)
            if len(self.logs) > 10000:
                del self.logs[:5000]
            if self._log_stream is not None:
                print(line, file=self._log_stream, flush=True)
