#!/usr/bin/env python3
"""A protocol-faithful test double of TensorFlow Serving's ``tensorflow_model_server``.

The real binary cannot be installed here, so the operator's tests run against this double. It follows
``/work/shared/reference/tfserving.md`` (the section numbers in comments, e.g. "§1.4", point into it):
the CLI flags and exit codes, the start-up wait, version discovery and polling, version labels, the REST
routing and error bodies, the model status JSON (produced with the official protos), and the Prometheus
endpoint. It runs no model (``:predict`` answers a deterministic fake) and implements no gRPC: the gRPC
port is only a listening TCP socket so that port checks behave. It only ever binds 127.0.0.1.

Run as a program (same flags as ``tensorflow_model_server``) or use ``TFServingDouble`` in-process.
See ``docs/tfserving-double.md``.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import functools
import http.server
import json
import math
import os
import re
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from google.protobuf import json_format, text_format

# ------------------------------------------------------------------------------------------------------------
# Status codes (§1.8). TF codes are the gRPC codes; numbers match tensorflow.error.Code.

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
DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"  # §7
INT64_MAX = 2**63 - 1
FLOAT32_MAX = 3.4028234663852886e38


class TFError(Exception):
    """A TF Status that is not OK: a code name from CODES plus the message."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message

    def __str__(self) -> str:  # absl::Status::ToString style, e.g. "NOT_FOUND: ..."
        return f"{self.code}: {self.message}"


class StartupError(TFError):
    """Raised by ``TFServingDouble.start`` where the real server prints ``Failed to start server``."""


def _invalid(message: str) -> TFError:
    return TFError("INVALID_ARGUMENT", message)


# ------------------------------------------------------------------------------------------------------------
# Protos. The config protos import no TensorFlow; the API protos do (§4.5), so they load lazily, once.


@functools.cache
def _config_pb2() -> Any:
    from tensorflow_serving.config import model_server_config_pb2

    return model_server_config_pb2


@functools.cache
def _api_pb2() -> Any:
    """GetModelStatus/GetModelMetadata protos plus the TF protos they need (imports TensorFlow, ~4 s)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tensorflow.core.framework import types_pb2
    from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
    from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

    return type("Apis", (), {
        "status": get_model_status_pb2, "metadata": get_model_metadata_pb2, "meta_graph": meta_graph_pb2,
        "saved_model": saved_model_pb2, "types": types_pb2,
    })


@functools.cache
def _local_message_classes() -> dict[str, Any]:
    """MonitoringConfig and BatchingParameters: not shipped in tensorflow-serving-api (§4.5), so built here.

    Field names follow §4.3/§4.4; text format only uses names, so the numbers of the two newer batching fields
    (UNCONFIRMED upstream) do not matter.
    """
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    fdp = descriptor_pb2.FileDescriptorProto(
        name="tfserving_double/local_configs.proto", package="tensorflow.serving", syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"])
    fd = descriptor_pb2.FieldDescriptorProto
    prom = fdp.message_type.add(name="PrometheusConfig")
    prom.field.add(name="enable", number=1, type=fd.TYPE_BOOL, label=fd.LABEL_OPTIONAL)
    prom.field.add(name="path", number=2, type=fd.TYPE_STRING, label=fd.LABEL_OPTIONAL)
    mon = fdp.message_type.add(name="MonitoringConfig")
    mon.field.add(name="prometheus_config", number=1, type=fd.TYPE_MESSAGE, label=fd.LABEL_OPTIONAL,
                  type_name=".tensorflow.serving.PrometheusConfig")
    bp = fdp.message_type.add(name="BatchingParameters")
    wrapped = [("max_batch_size", 1, "Int64Value"), ("batch_timeout_micros", 2, "Int64Value"),
               ("max_enqueued_batches", 3, "Int64Value"), ("num_batch_threads", 4, "Int64Value"),
               ("thread_pool_name", 5, "StringValue"), ("enable_large_batch_splitting", 8, "BoolValue"),
               ("max_execution_batch_size", 9, "Int64Value")]
    for name, number, wrapper in wrapped:
        bp.field.add(name=name, number=number, type=fd.TYPE_MESSAGE, label=fd.LABEL_OPTIONAL,
                     type_name=f".google.protobuf.{wrapper}")
    bp.field.add(name="allowed_batch_sizes", number=6, type=fd.TYPE_INT64, label=fd.LABEL_REPEATED)
    bp.field.add(name="pad_variable_length_inputs", number=7, type=fd.TYPE_BOOL, label=fd.LABEL_OPTIONAL)
    pool.Add(fdp)
    return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tensorflow.serving.{n}"))
            for n in ("MonitoringConfig", "BatchingParameters")}


def parse_proto_text_file(path: str, message: Any) -> Any:
    """ParseProtoTextFile (§4): any read or parse failure is ``Invalid protobuf file: '<file>'``."""
    try:
        with open(path, encoding="utf-8") as f:
            text_format.Parse(f.read(), message)
    except (OSError, UnicodeDecodeError, text_format.ParseError) as e:
        raise _invalid(f"Invalid protobuf file: '{path}'") from e
    return message


# ------------------------------------------------------------------------------------------------------------
# Model configuration (§4.1, §4.2)


@dataclasses.dataclass(frozen=True)
class ModelSpecConfig:
    """One ``ModelConfig`` entry reduced to what the double uses."""

    name: str
    base_path: str
    platform: str
    policy: str = "latest"  # latest | all | specific
    num_versions: int = 1
    specific_versions: tuple[int, ...] = ()
    labels: tuple[tuple[str, int], ...] = ()


def models_from_config(config: Any) -> list[ModelSpecConfig]:
    """Convert a parsed ModelServerConfig; a non-list config (custom_model_config) is unsupported."""
    if config.WhichOneof("config") == "custom_model_config":
        raise _invalid("ModelServerConfig.custom_model_config is not supported by the test double")
    out = []
    for c in config.model_config_list.config:
        pol = c.model_version_policy
        choice = pol.WhichOneof("policy_choice") or "latest"
        out.append(ModelSpecConfig(
            name=c.name, base_path=c.base_path, platform=c.model_platform, policy=choice,
            num_versions=max(pol.latest.num_versions, 1),  # 0 is treated as 1 (§4.1)
            specific_versions=tuple(pol.specific.versions),
            labels=tuple(sorted(c.version_labels.items()))))
    return out


def validate_models(models: list[ModelSpecConfig]) -> None:
    """ValidateModelConfigList (§4.1); all failures are INVALID_ARGUMENT."""
    seen: set[str] = set()
    for m in models:
        if m.name in seen:
            raise _invalid(f"Illegal to list model {m.name} multiple times in config list")
        seen.add(m.name)
        if not m.platform:
            raise _invalid("Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
                           "ModelServerConfig::model_platform.")
        if m.platform != "tensorflow":
            raise _invalid(f"Model {m.name} requests unsupported platform {m.platform}")
        if not (m.base_path.startswith("/") or "://" in m.base_path):
            raise _invalid(f"Expected model {m.name} to have an absolute path or URI; got "
                           f"base_path()={m.base_path}")


def load_model_config_file(path: str) -> list[ModelSpecConfig]:
    """Read, parse and validate a ``--model_config_file``."""
    models = models_from_config(parse_proto_text_file(path, _config_pb2().ModelServerConfig()))
    validate_models(models)
    return models


# ------------------------------------------------------------------------------------------------------------
# Version directories (§5)

_SAFE_STRTO64 = re.compile(r"[ \t\n\v\f\r]*(-?[0-9]+)[ \t\n\v\f\r]*")


def parse_version_dir(name: str) -> int | None:
    """``strings::safe_strto64``: spaces around, optional '-', ASCII digits, int64 range; else None."""
    m = _SAFE_STRTO64.fullmatch(name)
    if not m:
        return None
    value = int(m.group(1))
    return value if -(2**63) <= value <= INT64_MAX else None


def _servable_request(name: str, version: int | None) -> str:
    """ServableRequest::DebugString (§1.6)."""
    return f"Latest({name})" if version is None else f"Specific({name}, {version})"


# ------------------------------------------------------------------------------------------------------------
# Servable state (ServableStateMonitor + AvailabilityPreservingPolicy, §1.4 and §5)


@dataclasses.dataclass
class VersionRecord:
    """What the monitor knows about one version; records are never removed (§1.4)."""

    state: str
    path: str
    error_code: str = "OK"
    error_message: str = ""
    aspired: bool = True
    in_manager: bool = True  # False once unloaded / dropped by the manager
    signatures: bytes | None = None  # serialized SignatureDefMap while loaded


@dataclasses.dataclass
class ServerOptions:
    """The subset of ``tensorflow_model_server`` options the double honours (names as the flags)."""

    port: int = 8500
    grpc_socket_path: str = ""
    rest_api_port: int | None = None  # None = REST off
    rest_api_enable_cors_support: bool = False
    model_name: str = "default"
    model_base_path: str = ""
    model_config_file: str = ""
    model_config_file_poll_wait_seconds: float = 0
    file_system_poll_wait_seconds: float = 1
    max_num_load_retries: int = 5
    load_retry_interval_seconds: float = 60.0
    enable_batching: bool = False
    batching_parameters_file: str = ""
    allow_version_labels_for_unavailable_models: bool = False
    monitoring_config_file: str = ""
    load_delay_seconds: float = 0.0  # double only: time spent in LOADING


# Written when <version>/saved_model.pb(txt) is missing; text and code of TF's SavedModel reader.
def _missing_saved_model_error(path: str) -> TFError:
    return TFError("NOT_FOUND", f"Could not find SavedModel .pb or .pbtxt at supplied export directory path: "
                                f"{path}. Check that the directory exists and that you have the right "
                                f"permissions for accessing it.")


class Metrics:
    """Counters and histograms printed in TF Serving's Prometheus format (§7)."""

    _BUCKETS = tuple(10.0 * 1.8**i for i in range(33))  # exponential; real boundaries not in the reference

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
        self._histograms: dict[str, dict[tuple[tuple[str, str], ...], list[float]]] = {}

    def inc(self, name: str, labels: dict[str, str], value: float = 1) -> None:
        key = tuple(labels.items())
        with self._lock:
            series = self._counters.setdefault(name, {})
            series[key] = series.get(key, 0) + value

    def observe(self, name: str, labels: dict[str, str], value: float) -> None:
        key = tuple(labels.items())
        with self._lock:
            series = self._histograms.setdefault(name, {})
            samples = series.setdefault(key, [])
            samples.append(value)

    @staticmethod
    def prom_name(name: str) -> str:
        return re.sub(r"[^a-zA-Z0-9_]", ":", name)

    @staticmethod
    def _labels(pairs: Iterable[tuple[str, str]]) -> str:
        return "{" + ",".join(f'{k}="{_prom_escape(v)}"' for k, v in pairs) + "}"

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            for name, series in sorted(self._counters.items()):
                lines.append(f"# TYPE {self.prom_name(name)} counter")
                lines += [f"{self.prom_name(name)}{self._labels(k)} {_num(v)}" for k, v in series.items()]
            for name, series in sorted(self._histograms.items()):
                pname = self.prom_name(name)
                lines.append(f"# TYPE {pname} histogram")
                for key, samples in series.items():
                    for le in self._BUCKETS:
                        count = sum(1 for s in samples if s <= le)
                        lines.append(f"{pname}_bucket{self._labels(key + (('le', _num(le)),))} {count}")
                    lines.append(f"{pname}_bucket{self._labels(key + (('le', '+Inf'),))} {len(samples)}")
                    lines.append(f"{pname}_sum{self._labels(key)} {_num(sum(samples))}")
                    lines.append(f"{pname}_count{self._labels(key)} {len(samples)}")
        return "\n".join(lines) + "\n"


def _prom_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


class ModelManager:
    """Config, version discovery, loading/unloading and labels; shared by the REST layer."""

    def __init__(self, options: ServerOptions, log: Callable[[str, str, str], None], metrics: Metrics):
        self.options, self._log, self.metrics = options, log, metrics
        self._cond = threading.Condition()  # guards everything below
        self._models: dict[str, ModelSpecConfig] = {}
        self._monitor: dict[str, dict[int, VersionRecord]] = {}
        self._labels: dict[str, dict[str, int]] = {}
        self._cycle_lock = threading.Lock()  # one poll/load cycle at a time (single manager thread)
        self.stopping = threading.Event()

    # -- queries used by REST --------------------------------------------------------------------------------

    def version_states(self, name: str) -> dict[int, VersionRecord]:
        with self._cond:
            return {v: dataclasses.replace(r) for v, r in self._monitor.get(name, {}).items()}

    def resolve(self, name: str, version: int | None, label: str | None) -> tuple[int, VersionRecord]:
        """ServerCore::GetServableHandle: label lookup, then Latest/Specific among AVAILABLE ones (§1.6)."""
        with self._cond:
            if label is not None:
                if label not in self._labels.get(name, {}):
                    raise _invalid(f"Unrecognized servable version label: {label}")
                version = self._labels[name][label]
            available = {v: r for v, r in self._monitor.get(name, {}).items() if r.state == "AVAILABLE"}
            chosen = max(available) if version is None and available else version
            if chosen is None or chosen not in available:
                request = _servable_request(name, version)
                raise TFError("NOT_FOUND", f"Servable not found for request: {request}")
            return chosen, dataclasses.replace(available[chosen])

    def labels(self, name: str) -> dict[str, int]:
        with self._cond:
            return dict(self._labels.get(name, {}))

    def model_names(self) -> list[str]:
        with self._cond:
            return list(self._models)

    # -- configuration ---------------------------------------------------------------------------------------

    def apply_config(self, models: list[ModelSpecConfig], *, initial: bool) -> list[str]:
        """ServerCore::ReloadConfig minus the waiting: labels first (§4.2), then the model set.

        Returns the names of newly added models (the caller waits for them). Removed models are un-aspired
        right away; every other change takes effect on the poll that follows.
        """
        with self._cond:
            self._labels = self._checked_labels(models)
            old = self._models
            self._models = {m.name: m for m in models}
            removed = [n for n in old if n not in self._models]
            added = [n for n in self._models if n not in old]
        if not initial:
            self._log("I", "server_core.cc", "Adding/updating models.")
        for name in removed:
            with self._cycle_lock:
                self._apply_aspired(name, {})
        return added

    def _checked_labels(self, models: list[ModelSpecConfig]) -> dict[str, dict[str, int]]:
        """UpdateModelVersionLabelMap: every label must name an AVAILABLE version, unless the allow flag
        is set and the label is new or unchanged (moving a label always needs an AVAILABLE target)."""
        new: dict[str, dict[str, int]] = {}
        for m in models:
            states = self._monitor.get(m.name, {})
            for label, version in m.labels:
                previous = self._labels.get(m.name, {}).get(label)
                allow = self.options.allow_version_labels_for_unavailable_models
                exempt = allow and previous in (None, version)
                rec = states.get(version)
                if not exempt and (rec is None or rec.state != "AVAILABLE"):
                    raise TFError("FAILED_PRECONDITION",
                                  f"Request to assign label to version {version} of model {m.name}, which is "
                                  f"not currently available for inference")
                new.setdefault(m.name, {})[label] = version
        return new

    # -- file-system polling (§5) ----------------------------------------------------------------------------

    def poll_once(self) -> None:
        """One FileSystemStoragePathSource poll for all models, then the manager's load/unload actions.

        Any model's missing base path aborts the whole poll: no model gets an update (§5, derived).
        """
        with self._cycle_lock:
            with self._cond:
                models = list(self._models.values())
            aspired: dict[str, dict[int, str]] = {}
            for m in models:
                try:
                    aspired[m.name] = self._scan(m)
                except TFError as e:
                    self._log("E", "file_system_storage_path_source.cc",
                              "FileSystemStoragePathSource encountered a filesystem access error: "
                              + e.message)
                    return
            for name, versions in aspired.items():
                if self.stopping.is_set():
                    return
                self._apply_aspired(name, versions)

    def _scan(self, m: ModelSpecConfig) -> dict[int, str]:
        """Aspired versions -> their directories, per the model's version policy."""
        if "://" in m.base_path or not os.path.isdir(m.base_path):
            raise TFError("NOT_FOUND", f"Could not find base path {m.base_path} for servable {m.name} with "
                                       f"error NOT_FOUND: {m.base_path} not found")
        found: dict[int, str] = {}
        for child in sorted(os.listdir(m.base_path)):
            v = parse_version_dir(child)
            if v is None:
                continue  # non-numeric children are silently ignored
            if v in found:
                self._log("W", "file_system_storage_path_source.cc",
                          f"Duplicate version directories detected. Version {v} will be loaded from "
                          f"{found[v]}, {os.path.join(m.base_path, child)} will be ignored.")
                continue
            found[v] = os.path.join(m.base_path, child)
        if not found:
            self._log("W", "file_system_storage_path_source.cc",
                      f"No versions of servable {m.name} found under base path {m.base_path}. Did you forget "
                      f"to name your leaf directory as a number (eg. '/1/')?")
            return {}
        if m.policy == "all":
            return found
        if m.policy == "specific":
            for v in m.specific_versions:
                if v not in found:
                    self._log("W", "file_system_storage_path_source.cc",
                              f"Version {v} of servable {m.name}, which was requested to be served as a "
                              f"'specific' version in the servable's version policy, was not found in the "
                              f"file system")
            return {v: p for v, p in found.items() if v in m.specific_versions}
        return {v: found[v] for v in sorted(found, reverse=True)[: m.num_versions]}

    def _apply_aspired(self, name: str, aspired: dict[int, str]) -> None:
        """AspiredVersionsManager: record the aspired set, then act until the policy has nothing to do."""
        with self._cond:
            recs = self._monitor.setdefault(name, {})
            for v, rec in recs.items():
                if rec.in_manager:
                    rec.aspired = v in aspired
                    if not rec.aspired and rec.state in ("START", "END"):
                        rec.in_manager = False  # never loaded, or failed: just dropped
                        rec.state = "END"
            for v, path in aspired.items():
                if v not in recs or not recs[v].in_manager:
                    recs[v] = VersionRecord(state="START", path=path)
            self._cond.notify_all()
        while not self.stopping.is_set():
            action = self._next_action(name)
            if action is None:
                return
            kind, version = action
            if kind == "unload":
                self._unload(name, version)
            else:
                self._load(name, version)

    def _next_action(self, name: str) -> tuple[str, int] | None:
        """AvailabilityPreservingPolicy: unload only when availability is kept, load the newest first."""
        with self._cond:
            recs = {v: r for v, r in self._monitor.get(name, {}).items() if r.in_manager}
        has_aspired = any(r.aspired for r in recs.values())
        aspired_serving = any(r.aspired and r.state == "AVAILABLE" for r in recs.values())
        unaspired_serving = [v for v, r in recs.items() if not r.aspired and r.state == "AVAILABLE"]
        if unaspired_serving and (not has_aspired or aspired_serving or len(unaspired_serving) > 1):
            return "unload", min(unaspired_serving)
        new = [v for v, r in recs.items() if r.aspired and r.state == "START"]
        return ("load", max(new)) if new else None

    def _set(self, name: str, version: int, **changes: Any) -> None:
        with self._cond:
            rec = self._monitor[name][version]
            for k, v in changes.items():
                setattr(rec, k, v)
            self._cond.notify_all()

    def _unload(self, name: str, version: int) -> None:
        self._set(name, version, state="UNLOADING")
        self._log("I", "loader_harness.cc", f"Unloading servable version {{name: {name} version: {version}}}")
        self._set(name, version, state="END", in_manager=False, signatures=None)
        self._log("I", "loader_harness.cc",
                  f"Done unloading servable version {{name: {name} version: {version}}}")

    def _load(self, name: str, version: int) -> None:
        """LOADING for the simulated delay, then AVAILABLE, or END with the error after the retries."""
        with self._cond:
            path = self._monitor[name][version].path
        self._set(name, version, state="LOADING")
        self._log("I", "loader_harness.cc", f"Loading servable version {{name: {name} version: {version}}}")
        if self.stopping.wait(self.options.load_delay_seconds):
            return
        error = None
        for attempt in range(self.options.max_num_load_retries + 1):
            if attempt and self.stopping.wait(self.options.load_retry_interval_seconds):
                return
            try:
                signatures = read_signatures(path)
                error = None
                break
            except TFError as e:
                error = e
                self.metrics.inc("/tensorflow/cc/saved_model/load_attempt_count",
                                 {"model_path": path, "status": "fail"})
                self._log("E", "loader_harness.cc", f"Loading servable: {{name: {name} version: {version}}} "
                                                    f"failed: {e}")
        if error is None:
            self.metrics.inc("/tensorflow/cc/saved_model/load_attempt_count",
                             {"model_path": path, "status": "success"})
            self._set(name, version, state="AVAILABLE", signatures=signatures)
            self._log("I", "loader_harness.cc",
                      f"Successfully loaded servable version {{name: {name} version: {version}}}")
        else:
            self._set(name, version, state="END", error_code=error.code, error_message=error.message)

    # -- waiting ---------------------------------------------------------------------------------------------

    def wait_models(self, names: list[str], timeout: float | None = None) -> list[str] | None:
        """WaitUntilServablesReachState(Latest(name)...): until each model has an AVAILABLE version or its
        newest version ended in error. Returns the failed names, or None on timeout/stop."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                pending, failed = [], []
                for n in names:
                    outcome = self._model_outcome(n)
                    (pending if outcome is None else failed if outcome else []).append(n)
                if not pending:
                    return failed
                if self.stopping.is_set():
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(0.2 if remaining is None else min(remaining, 0.2))

    def _model_outcome(self, name: str) -> bool | None:
        """None = still waiting; False = available; True = failed (newest known version in END with error)."""
        recs = self._monitor.get(name, {})
        if any(r.state == "AVAILABLE" for r in recs.values()):
            return False
        aspired = [v for v, r in recs.items() if r.in_manager and r.aspired]
        if aspired and recs[max(aspired)].state == "END" and recs[max(aspired)].error_code != "OK":
            return True
        return None

    def wait_for_state(self, name: str, version: int, state: str, timeout: float) -> bool:
        """Test helper: block until version ``version`` of ``name`` is in ``state``."""
        if state not in STATES:
            raise ValueError(f"state must be one of {STATES}")
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                rec = self._monitor.get(name, {}).get(version)
                if rec is not None and rec.state == state:
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.2))


# ------------------------------------------------------------------------------------------------------------
# SavedModel signatures (metadata and the fake predict need them)


def _default_signature_map_bytes() -> bytes:
    """half_plus_two's ``serving_default``: x float [-1,1] -> y float [-1,1] (§1.5 reference output)."""
    apis = _api_pb2()
    sdm = apis.metadata.SignatureDefMap()
    sd = sdm.signature_def["serving_default"]
    sd.method_name = "tensorflow/serving/predict"
    for key, tensor in (("x", "x:0"), ("y", "y:0")):
        info = (sd.inputs if key == "x" else sd.outputs)[key]
        info.name = tensor
        info.dtype = apis.types.DT_FLOAT
        info.tensor_shape.dim.add(size=-1)
        info.tensor_shape.dim.add(size=1)
    return sdm.SerializeToString()


def read_signatures(version_dir: str) -> bytes:
    """The version "loads" iff saved_model.pb or saved_model.pbtxt exists (§5). A real SavedModel's "serve"
    signatures are used; any other bytes get half_plus_two's signature."""
    pb = os.path.join(version_dir, "saved_model.pb")
    pbtxt = os.path.join(version_dir, "saved_model.pbtxt")
    if not (os.path.isfile(pb) or os.path.isfile(pbtxt)):
        raise _missing_saved_model_error(version_dir)
    apis = _api_pb2()
    saved = apis.saved_model.SavedModel()
    try:
        if os.path.isfile(pb):
            with open(pb, "rb") as f:
                saved.ParseFromString(f.read())
        else:
            with open(pbtxt, encoding="utf-8") as f:
                text_format.Parse(f.read(), saved)
    except Exception:  # noqa: BLE001 - arbitrary placeholder bytes are allowed
        return _default_signature_map_bytes()
    for mg in saved.meta_graphs:
        if "serve" in mg.meta_info_def.tags and mg.signature_def:
            sdm = apis.metadata.SignatureDefMap()
            for k, sd in mg.signature_def.items():
                sdm.signature_def[k].CopyFrom(sd)
            return sdm.SerializeToString()
    return _default_signature_map_bytes()


def _signature_map(blob: bytes) -> Any:
    sdm = _api_pb2().metadata.SignatureDefMap()
    sdm.ParseFromString(blob)
    return sdm


# ------------------------------------------------------------------------------------------------------------
# JSON helpers


def _message_to_json(message: Any, *, preserve_names: bool) -> str:
    """MessageToJsonString with add_whitespace (1-space indent) and always_print_primitive_fields."""
    kwargs: dict[str, Any] = {"indent": 1, "preserving_proto_field_name": preserve_names,
                              "ensure_ascii": False}
    try:
        return json_format.MessageToJson(message, always_print_fields_with_no_presence=True, **kwargs)
    except TypeError:  # protobuf < 5.26 spells the option differently
        return json_format.MessageToJson(message, including_default_value_fields=True, **kwargs)


def rapidjson_pretty(value: Any, level: int = 0) -> str:
    """rapidjson PrettyWriter layout (4 spaces) used for error bodies and JSON values in messages."""
    pad, inner = "    " * level, "    " * (level + 1)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{inner}{json.dumps(k, ensure_ascii=False)}: {rapidjson_pretty(v, level + 1)}"
                 for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list):
        if not value:
            return "[]"
        return "[\n" + ",\n".join(inner + rapidjson_pretty(v, level + 1) for v in value) + "\n" + pad + "]"
    if isinstance(value, float):
        return _decimal(value)
    return json.dumps(value, ensure_ascii=False)


def _decimal(value: float) -> str:
    """WriteDecimal (§1.6): shortest round-trip, whole numbers get '.0', bare NaN/Infinity tokens."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "-Infinity" if value < 0 else "Infinity"
    return repr(float(value))


def error_body(message: str) -> str:
    """MakeJsonFromStatus (§1.7): ``{\\n    "error": "<msg>"\\n}``, no trailing newline."""
    return "{\n    \"error\": " + json.dumps(message, ensure_ascii=False) + "\n}"


_RAPIDJSON_MESSAGES = (
    ("Expecting value", "Invalid value."),
    ("Expecting property name enclosed in double quotes", "Missing a name for object member."),
    ("Expecting ':' delimiter", "Missing a colon after a name of object member."),
    ("Unterminated string", "Missing a closing quotation mark in string."),
    ("Invalid control character", "Invalid encoding in string."),
    ("Invalid \\escape", "Invalid escape character in string."),
    ("Extra data", "The document root must not be followed by other values."),
)


def parse_json_object(body: bytes) -> dict[str, Any]:
    """ParseJson in json_tensor.cc: empty -> 'The document is empty'; syntax errors get rapidjson's English
    message and byte offset; a non-object top level -> 'Is not object'. NaN/Infinity are accepted."""
    if not body:
        raise _invalid("JSON Parse error: The document is empty")
    text = body.decode("utf-8", errors="replace")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        if not text.strip():
            raise _invalid("JSON Parse error: The document is empty") from None
        msg = next((rj for py, rj in _RAPIDJSON_MESSAGES if e.msg.startswith(py)), None)
        if msg is None:
            msg = "Missing a comma or ']' after an array element." if "','" in e.msg else "Invalid value."
        offset = len(text[: e.pos].encode("utf-8"))
        raise _invalid(f"JSON Parse error: {msg} at offset: {offset}") from None
    if not isinstance(doc, dict):
        raise _invalid(f"JSON Value: {rapidjson_pretty(doc)} Is not object")
    return doc


# ------------------------------------------------------------------------------------------------------------
# Fake inference (no model runs). Deterministic: numbers v -> 0.5 * v + 2 (half_plus_two), others echoed.

_INT_TYPES = {"int32", "int16", "int8", "uint8", "int64", "uint32", "uint64"}


def _dtype_name(dtype: int) -> str:
    """DataTypeString: DT_FLOAT -> 'float'."""
    return _api_pb2().types.DataType.Name(dtype)[3:].lower()


def _type_error(val: Any, dtype: str) -> TFError:
    kind = {dict: "Object", list: "Array", str: "String", bool: "True" if val is True else "False",
            type(None): "Null"}.get(type(val), "Number")
    return _invalid(f"JSON Value: {rapidjson_pretty(val)} Type: {kind} is not of expected type: {dtype}")


def _check_leaf(val: Any, dtype: str) -> None:
    """AddValueToTensor's type checks for the common dtypes."""
    if isinstance(val, dict):
        if dtype == "string" and set(val) == {"b64"} and isinstance(val["b64"], str):
            return
        raise _type_error(val, dtype)
    is_number = isinstance(val, (int, float)) and not isinstance(val, bool)
    if dtype in ("float", "double"):
        if not is_number:
            raise _type_error(val, dtype)
        limit = 2**24 - 1 if dtype == "float" else 2**53 - 1
        too_big = (dtype == "float" and isinstance(val, float) and math.isfinite(val)
                   and abs(val) > FLOAT32_MAX)
        if (isinstance(val, int) and abs(val) > limit) or too_big:
            raise _invalid(f"Cannot convert JSON value: {val} to {dtype} without loss of precision.")
    elif dtype in _INT_TYPES and not (isinstance(val, int) and not isinstance(val, bool)):
        raise _type_error(val, dtype)
    elif dtype == "string" and not isinstance(val, str):
        raise _type_error(val, dtype)
    elif dtype == "bool" and not isinstance(val, bool):
        raise _type_error(val, dtype)


def _dense_shape(val: Any) -> list[int]:
    shape = []
    while isinstance(val, list):
        shape.append(len(val))
        if not val:
            break
        val = val[0]
    return shape


def _fill(val: Any, level: int, shape: list[int], dtype: str) -> int:
    """FillTensorProto: leaves at depth == rank, lists of the expected size; returns the value count."""
    if not isinstance(val, list):
        if level != len(shape):
            raise _invalid(f"JSON Value: {rapidjson_pretty(val)} found at incorrect level: {level + 1} "
                           f"in the JSON DOM. Expected at level: {len(shape)}")
        _check_leaf(val, dtype)
        return 1
    if level >= len(shape):
        raise _invalid(f"Encountered list at unexpected level: {level} expected < {len(shape)}")
    if len(val) != shape[level]:
        raise _invalid(f"Encountered list at unexpected size: {len(val)} at level: {level} expected size: "
                       f"{shape[level]}")
    return sum(_fill(v, level + 1, shape, dtype) for v in val)


def _check_tensor(val: Any, dtype: str) -> tuple[list[int], int]:
    shape = _dense_shape(val)
    return shape, _fill(val, 0, shape, dtype)


def _fake(val: Any) -> Any:
    if isinstance(val, list):
        return [_fake(v) for v in val]
    if isinstance(val, (int, float)) and not isinstance(val, bool):
        return 0.5 * val + 2.0
    return val


def _fake_outputs(inputs: dict[str, Any], sig: Any) -> dict[str, Any]:
    """Every output = the fake of the first input (sorted by name); ``*_bytes`` string outputs as b64."""
    first = inputs[sorted(inputs)[0]]
    out = {}
    for name, info in sorted(sig.outputs.items()):
        value = _fake(first)
        if name.endswith("_bytes") and _dtype_name(info.dtype) == "string":
            value = _b64_all(value)
        out[name] = value
    return out


def _b64_all(val: Any) -> Any:
    if isinstance(val, list):
        return [_b64_all(v) for v in val]
    raw = val.get("b64", "") if isinstance(val, dict) else str(val)
    return {"b64": raw if isinstance(val, dict) else base64.b64encode(raw.encode()).decode()}


def predict_inputs(doc: dict[str, Any], sig: Any) -> tuple[str, dict[str, Any]]:
    """FillPredictRequestFromJson after the signature lookup: ('row'|'columnar', inputs by name)."""
    infos = dict(sorted(sig.inputs.items()))
    if not infos:
        raise _invalid("Failed to get input map for signature: DEFAULT")
    has_instances, has_inputs = "instances" in doc, "inputs" in doc
    if has_instances and has_inputs:
        raise _invalid(f"JSON Value: {rapidjson_pretty(doc)} Not formatted correctly expecting only one of "
                       f"'inputs' or 'instances' keys to exist ")
    if has_instances:
        return "row", _row_inputs(doc, infos)
    if has_inputs:
        return "columnar", _columnar_inputs(doc["inputs"], infos)
    raise _invalid("Missing 'inputs' or 'instances' key")


def _is_object(val: Any) -> bool:
    return isinstance(val, dict) and not (set(val) == {"b64"} and isinstance(val["b64"], str))


def _row_inputs(doc: dict[str, Any], infos: dict[str, Any]) -> dict[str, Any]:
    instances = doc["instances"]
    if not isinstance(instances, list):
        raise _invalid(f"JSON Value: {rapidjson_pretty(doc)} Excepting 'instances' to be an list/array")
    if not instances:
        raise _invalid(f"JSON Value: {rapidjson_pretty(doc)} No values in 'instances' array")
    objects = _is_object(instances[0])
    if not objects and len(infos) > 1:
        raise _invalid("instances is a plain list, but expecting list of objects as multiple input tensors "
                       "required as per tensorinfo_map")
    columns: dict[str, list[Any]] = {n: [] for n in infos}
    first_shape: dict[str, list[int]] = {}
    for i, item in enumerate(instances):
        if objects != _is_object(item):
            what = "object but got list" if objects else "value/list but got object"
            raise _invalid(f"Expecting {what} at item {i} of input list")
        pairs = item.items() if objects else [(next(iter(infos)), item)]
        for name, value in pairs:
            try:
                if name not in infos:
                    raise _invalid(f"JSON object: does not have named input: {name}")
                shape, _ = _check_tensor(value, _dtype_name(infos[name].dtype))
                if name in first_shape and first_shape[name] != shape:
                    raise _invalid(f"Expecting shape [{','.join(map(str, first_shape[name]))}] but got: "
                                   f"[{','.join(map(str, shape))}]")
                first_shape.setdefault(name, shape)
            except TFError as e:
                where = f"{i} key: {name}" if objects else f"{i}"
                raise _invalid(f"Failed to process element: {where} of 'instances' list. "
                               f"Error: {e}") from None
            columns[name].append(value)
        if objects and set(item) != set(infos):
            raise _invalid(f"Failed to process element: {i} of 'instances' list. JSON object: "
                           f"{rapidjson_pretty(item)} keys must be equal to: {','.join(infos)}")
    return columns


def _columnar_inputs(val: Any, infos: dict[str, Any]) -> dict[str, Any]:
    if not _is_object(val):
        if len(infos) > 1:
            raise _invalid("inputs is a plain value/list, but expecting an object as multiple input tensors "
                           "required as per tensorinfo_map")
        name = next(iter(infos))
        _check_tensor(val, _dtype_name(infos[name].dtype))
        return {name: val}
    out = {}
    for name, info in infos.items():
        if name not in val:
            raise _invalid(f"Missing named input: {name} in 'inputs' object.")
        _check_tensor(val[name], _dtype_name(info.dtype))
        out[name] = val[name]
    return out


def predict_body(fmt: str, inputs: dict[str, Any], sig: Any) -> str:
    """MakeRowFormatJsonFromTensors / MakeColumnarFormatJsonFromTensors shapes, with fake values."""
    outputs = _fake_outputs(inputs, sig)
    if fmt == "columnar":
        value: Any = next(iter(outputs.values())) if len(outputs) == 1 else outputs
        return rapidjson_pretty({"outputs": value})
    batch = len(next(iter(outputs.values()))) if outputs else 0
    if len(outputs) == 1:
        rows: list[Any] = next(iter(outputs.values()))
    else:
        rows = [{k: v[i] for k, v in outputs.items()} for i in range(batch)]
    return rapidjson_pretty({"predictions": rows})


def examples_from_json(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """FillClassifyRegressRequestFromJson: optional 'context', required non-empty 'examples' of objects."""
    if "context" in doc:
        _check_example(doc["context"])
    if "examples" not in doc:
        raise _invalid(f"JSON Value: {rapidjson_pretty(doc)} When method is classify, key 'examples' is "
                       f"expected and was not found")
    examples = doc["examples"]
    if not isinstance(examples, list):
        raise _invalid(f"JSON Value: {rapidjson_pretty(doc)} Expecting 'examples' value to be an list/array")
    if not examples:
        raise _invalid(f"JSON Value: {rapidjson_pretty(doc)} 'examples' value is an empty array")
    for ex in examples:
        _check_example(ex)
    return examples


def _check_example(val: Any) -> None:
    """MakeExampleFromJsonObject: objects of features, each a value or a flat list of one kind."""
    kinds = {dict: "Object", list: "Array", str: "String", type(None): "Null", bool: "True"}
    if not isinstance(val, dict):
        raise _invalid(f"Example must be JSON object but got JSON {kinds.get(type(val), 'Number')}")
    for name, content in val.items():
        kind = None
        for item in content if isinstance(content, list) else [content]:
            if item is None or isinstance(item, list) or _is_object(item):
                t = "Null" if item is None else "Array" if isinstance(item, list) else "Object"
                raise _invalid(f"Feature: {name} has element with unexpected JSON type: {t}")
            this = ("int64" if isinstance(item, (bool, int)) else "float" if isinstance(item, float)
                    else "bytes")
            if kind not in (None, this):
                raise _invalid(f"Unexpected element type in feature: {name} expecting type: {kind}")
            kind = this


def _fake_score(example: dict[str, Any]) -> float:
    x = example.get("x")
    x = x[0] if isinstance(x, list) and x else x
    return 0.5 * x + 2.0 if isinstance(x, (int, float)) and not isinstance(x, bool) else 2.0


# ------------------------------------------------------------------------------------------------------------
# REST (§1)

PREDICT_RE = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)", re.I)
STATUS_RE = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?", re.I)
REST_PATH_RE = re.compile(r"/v1/.*", re.I)
ALLOWED_METHODS = {"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"}


def libevent_error_page(code: int, reason: str) -> bytes:
    """evhttp_send_error's HTML body (§1.2)."""
    return (f"<HTML><HEAD>\n<TITLE>{code} {reason}</TITLE>\n</HEAD><BODY>\n<H1>{reason}</H1>\n"
            f"</BODY></HTML>\n").encode()


def _url_decode(value: str) -> str:
    """curl_easy_unescape: %XX only ('+' stays), invalid escapes kept verbatim."""
    raw = value.encode("utf-8", errors="surrogateescape")
    out = re.sub(rb"%([0-9A-Fa-f]{2})", lambda m: bytes([int(m.group(1), 16)]), raw)
    return out.decode("utf-8", errors="replace")


@dataclasses.dataclass
class RestReply:
    status: int
    body: str
    model_name: str = ""
    code: str = "OK"
    api: str = ""


class RestApi:
    """HttpRestApiHandler::ProcessRequest: parse the path, dispatch, map the status to HTTP."""

    def __init__(self, manager: ModelManager):
        self.manager = manager

    def handle(self, method: str, path: str, body: bytes) -> RestReply:
        try:
            info = self._parse(method, path)
        except TFError as e:  # ParseModelInfo errors return before MakeJsonFromStatus: empty body (§1.7)
            return RestReply(HTTP_FOR_CODE[e.code], "", code=e.code)
        name = info.get("name") or ""
        try:
            body_text, api = self._dispatch(method, path, info, body)
        except TFError as e:
            return RestReply(HTTP_FOR_CODE.get(e.code, 500), error_body(e.message), name, e.code)
        return RestReply(200, body_text, name, "OK", api)

    @staticmethod
    def _parse(method: str, path: str) -> dict[str, Any]:
        m = None
        if method == "POST":
            m = PREDICT_RE.fullmatch(path)
        elif method == "GET":
            m = STATUS_RE.fullmatch(path)
        if not m:
            return {"ok": False}
        name, version, label, tail = m.groups()
        info: dict[str, Any] = {"ok": True, "name": _url_decode(name) if name else None, "tail": tail or ""}
        if version is not None:
            v = int(version)
            if v > INT64_MAX:
                raise _invalid(f"Failed to convert version: {version} to numeric.")
            info["version"] = v
        if label is not None:
            info["label"] = _url_decode(label)
        return info

    def _dispatch(self, method: str, path: str, info: dict[str, Any], body: bytes) -> tuple[str, str]:
        if info["ok"] and method == "POST" and info["tail"] in ("predict", "classify", "regress"):
            return self._inference(info, body), info["tail"]
        if info["ok"] and method == "GET":
            if info["tail"] == "metadata":
                return self._metadata(info), "GetModelMetadata"
            return self._status(info), "GetModelStatus"
        raise _invalid(f"Malformed request: {method} {path}")

    def _status(self, info: dict[str, Any]) -> str:
        """GetModelStatusImpl (§1.4): the label is not resolved; END versions kept; descending versions."""
        name = info["name"]
        if not name:
            raise _invalid("Missing model name in request.")
        states = self.manager.version_states(name)
        if "version" in info:
            v = info["version"]
            if v not in states:
                raise TFError("NOT_FOUND", f"Could not find version {v} of model {name}")
            states = {v: states[v]}
        elif not states:
            raise TFError("NOT_FOUND", f"Could not find any versions of model {name}")
        return status_json(states)

    def _metadata(self, info: dict[str, Any]) -> str:
        """GetModelMetadata (§1.5): servable lookup first, signature_def only, hand-concatenated JSON."""
        name = info["name"]
        if not name:
            raise _invalid("Missing model name in request.")
        version, rec = self.manager.resolve(name, info.get("version"), info.get("label"))
        return metadata_json(name, version, rec.signatures or b"")

    def _inference(self, info: dict[str, Any], body: bytes) -> str:
        doc = parse_json_object(body)
        sig_name = doc.get("signature_name", "")
        if not isinstance(sig_name, str):
            raise _invalid(f"JSON Value: {rapidjson_pretty(doc)} not formatted correctly. "
                           f"'signature_name' key must be a string value.")
        if info["tail"] != "predict":
            examples = examples_from_json(doc)
        _, rec = self.manager.resolve(info["name"], info.get("version"), info.get("label"))
        sigs = _signature_map(rec.signatures or b"").signature_def
        effective = sig_name or "serving_default"
        if effective not in sigs:
            raise _invalid(f'Serving signature name: "{effective}" not found in signature def')
        if info["tail"] == "predict":
            fmt, inputs = predict_inputs(doc, sigs[effective])
            return predict_body(fmt, inputs, sigs[effective])
        scores = [_fake_score(ex) for ex in examples]
        results: list[Any] = scores if info["tail"] == "regress" else [[["", s]] for s in scores]
        return rapidjson_pretty({"results": results})


def status_json(states: dict[int, VersionRecord]) -> str:
    """GetModelStatusResponse via the official proto and json_format with TF Serving's options (§1.4)."""
    pb = _api_pb2().status
    resp = pb.GetModelStatusResponse()
    for v in sorted(states, reverse=True):
        rec = states[v]
        mvs = resp.model_version_status.add(version=v, state=pb.ModelVersionStatus.State.Value(rec.state))
        mvs.status.error_code = CODES[rec.error_code]
        if rec.error_code != "OK":
            mvs.status.error_message = rec.error_message
    return _message_to_json(resp, preserve_names=False)


def metadata_json(name: str, version: int, signatures: bytes) -> str:
    """ToJsonString(GetModelMetadataResponse): per-field JSON with proto names, concatenated (§1.5)."""
    apis = _api_pb2()
    resp = apis.metadata.GetModelMetadataResponse()
    resp.model_spec.name = name
    resp.model_spec.version.value = version
    resp.metadata["signature_def"].Pack(_signature_map(signatures))
    sdm = apis.metadata.SignatureDefMap()
    resp.metadata["signature_def"].Unpack(sdm)
    spec = _message_to_json(resp.model_spec, preserve_names=True)
    sig = _message_to_json(sdm, preserve_names=True)
    return "{\n\"model_spec\":" + spec + ",\n\"metadata\": {\"signature_def\": " + sig + "}\n}\n"


class _Handler(http.server.BaseHTTPRequestHandler):
    """libevent + EvHTTPServer dispatch (§1.2): exact URI handlers, then ``(?i)/v1/.*``, else 404 HTML."""

    protocol_version = "HTTP/1.1"
    server: _RestServer

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


class _RestServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    double: TFServingDouble


# ------------------------------------------------------------------------------------------------------------
# The server


def _pick_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _GrpcPlaceholder:
    """A listening socket on the gRPC port (accepts and closes connections); no gRPC is implemented."""

    def __init__(self, port: int, socket_path: str):
        self.sockets: list[socket.socket] = []
        if port:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._bind(s, ("127.0.0.1", port))
        if socket_path:
            self._bind(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM), socket_path)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept, args=(s,), daemon=True) for s in self.sockets]
        for t in self._threads:
            t.start()

    def _bind(self, s: socket.socket, address: Any) -> None:
        try:
            s.bind(address)
            s.listen(64)
            s.settimeout(0.2)
        except OSError:
            s.close()
            self.close()
            raise _invalid("Failed to BuildAndStart gRPC server") from None
        self.sockets.append(s)

    def _accept(self, s: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = s.accept()
                conn.close()
            except TimeoutError:
                continue
            except OSError:
                return

    def close(self) -> None:
        if hasattr(self, "_stop"):
            self._stop.set()
        for s in self.sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes the accept() call at once
            except OSError:
                pass
            s.close()


class TFServingDouble:
    """In-process TF Serving double, bound to 127.0.0.1 only.

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
                 log_stream: TextIO | None = None, options: ServerOptions | None = None):
        if options is None:
            options = ServerOptions(
                port=port or _pick_free_port(), grpc_socket_path=grpc_socket_path,
                rest_api_port=None if rest_api_port is None else (rest_api_port or _pick_free_port()),
                rest_api_enable_cors_support=rest_api_enable_cors_support,
                model_name=model_name or "default", model_base_path=model_base_path or "",
                model_config_file=model_config_file or "",
                model_config_file_poll_wait_seconds=model_config_file_poll_wait_seconds,
                file_system_poll_wait_seconds=file_system_poll_wait_seconds,
                max_num_load_retries=max_num_load_retries,
                load_retry_interval_seconds=load_retry_interval_seconds,
                enable_batching=enable_batching, batching_parameters_file=batching_parameters_file or "",
                allow_version_labels_for_unavailable_models=allow_version_labels_for_unavailable_models,
                monitoring_config_file=monitoring_config_file or "", load_delay_seconds=load_delay_seconds)
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
        self._http: _RestServer | None = None
        self._grpc: _GrpcPlaceholder | None = None

    # -- public API ------------------------------------------------------------------------------------------

    @property
    def grpc_port(self) -> int:
        return self.options.port

    @property
    def rest_port(self) -> int | None:
        return self.options.rest_api_port

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.options.rest_api_port}"

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
            self._grpc.close()
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
            raise _invalid("Both server_options.model_base_path and server_options.model_config_file are "
                           "empty!")
        if o.model_config_file:
            return load_model_config_file(o.model_config_file)
        models = [ModelSpecConfig(name=o.model_name, base_path=o.model_base_path, platform="tensorflow")]
        validate_models(models)
        return models

    def _validate_side_configs(self) -> None:
        o, local = self.options, _local_message_classes()
        if o.batching_parameters_file and not o.enable_batching:
            raise _invalid("server_options.batching_parameters_file is set without setting "
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
            raise _invalid("At least one of server_options.grpc_port or server_options.grpc_socket_path "
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
        _api_pb2()  # TF-dependent protos (normally imported by the first load) before ports open
        self._log("I", "server_core.cc", "Finished adding/updating models")
        if o.model_config_file and o.model_config_file_poll_wait_seconds > 0:
            self._spawn(self._config_poll_loop, "config-poll")
        self._grpc = _GrpcPlaceholder(o.port, o.grpc_socket_path)
        self._log("I", "server.cc", f"Running gRPC ModelServer at 127.0.0.1:{o.port} ...")
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
            server = _RestServer(("127.0.0.1", o.rest_api_port), _Handler)
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


# ------------------------------------------------------------------------------------------------------------
# Command line (§2, §3): tensorflow::Flags semantics


@dataclasses.dataclass(frozen=True)
class Flag:
    name: str
    kind: str  # bool | int32 | int64 | float | string
    default: Any
    help: str = ""


FLAGS: tuple[Flag, ...] = (
    Flag("port", "int32", 8500, "gRPC port (the double only listens on it; no gRPC)"),
    Flag("grpc_socket_path", "string", ""),
    Flag("rest_api_port", "int32", 0, "REST port; 0 = REST off"),
    Flag("rest_api_num_threads", "int32", 8),
    Flag("rest_api_timeout_in_ms", "int32", 30000),
    Flag("rest_api_enable_cors_support", "bool", False),
    Flag("enable_batching", "bool", False),
    Flag("allow_version_labels_for_unavailable_models", "bool", False),
    Flag("batching_parameters_file", "string", ""),
    Flag("enable_per_model_batching_parameters", "bool", False),
    Flag("model_config_file", "string", ""),
    Flag("model_config_file_poll_wait_seconds", "int32", 0),
    Flag("model_name", "string", "default"),
    Flag("model_base_path", "string", ""),
    Flag("num_load_threads", "int32", 0),
    Flag("num_unload_threads", "int32", 0),
    Flag("max_num_load_retries", "int32", 5),
    Flag("load_retry_interval_micros", "int64", 60_000_000),
    Flag("file_system_poll_wait_seconds", "int32", 1),
    Flag("flush_filesystem_caches", "bool", True),
    Flag("tensorflow_session_parallelism", "int64", 0),
    Flag("tensorflow_intra_op_parallelism", "int64", 0),
    Flag("tensorflow_inter_op_parallelism", "int64", 0),
    Flag("tensorflow_session_config_file", "string", ""),
    Flag("ssl_config_file", "string", ""),
    Flag("platform_config_file", "string", ""),
    Flag("per_process_gpu_memory_fraction", "float", 0.0),
    Flag("saved_model_tags", "string", "serve"),
    Flag("grpc_channel_arguments", "string", ""),
    Flag("grpc_max_threads", "int32", 8),
    Flag("enable_model_warmup", "bool", True),
    Flag("num_request_iterations_for_warmup", "int32", 0),
    Flag("version", "bool", False),
    Flag("monitoring_config_file", "string", ""),
    Flag("remove_unused_fields_from_bundle_metagraph", "bool", True),
    Flag("prefer_tflite_model", "bool", False),
    Flag("num_tflite_pools", "int32", 2),
    Flag("num_tflite_interpreters_per_pool", "int32", 1),
    Flag("enable_signature_method_name_check", "bool", False),
    Flag("xla_cpu_compilation_enabled", "bool", False),
    Flag("enable_profiler", "bool", True),
    Flag("use_alts_credentials", "bool", False),
    Flag("thread_pool_factory_config_file", "string", ""),
    Flag("double_load_delay_seconds", "float", 0.0, "test double only: seconds a version stays LOADING"),
)

_INT_RE = re.compile(r"[ \t\n\v\f\r]*[+-]?[0-9]+")


def _flag_value(flag: Flag, value: str | None) -> Any:
    """Convert one value the way tensorflow::Flag does; None means the bad-value path (exit 255)."""
    if flag.kind == "bool":  # only --f, --f=true, --f=false
        return True if value in (None, "true") else False if value == "false" else None
    if value is None:
        return None
    if flag.kind in ("int32", "int64"):
        if not _INT_RE.fullmatch(value):  # sscanf("%d%c") rejects trailing characters
            return None
        n, bits = int(value), 31 if flag.kind == "int32" else 63
        return n if -(2**bits) <= n < 2**bits else None
    if flag.kind == "float":
        try:
            return float(value)
        except ValueError:
            return None
    return value


def parse_flags(argv: list[str]) -> tuple[dict[str, Any], list[str], bool]:
    """Returns (values, unrecognised args, ok). Last occurrence wins; only ``--name[=value]`` forms match."""
    values = {f.name: f.default for f in FLAGS}
    by_name = {f.name: f for f in FLAGS}
    unknown: list[str] = []
    ok = True
    for arg in argv:
        m = re.fullmatch(r"--([A-Za-z0-9_]+)(?:=(.*))?", arg, re.S)
        flag = by_name.get(m.group(1)) if m else None
        if flag is None or (flag.kind != "bool" and m.group(2) is None):
            unknown.append(arg)  # e.g. "--port 8500": "--port" alone does not match an int flag
            continue
        value = _flag_value(flag, m.group(2))
        if value is None:
            print(f"Couldn't interpret value {m.group(2)} for flag {flag.name}.", file=sys.stderr)
            ok = False
            continue
        values[flag.name] = value
    return values, unknown, ok


def usage(prog: str) -> str:
    lines = [f"usage: {prog}", "Flags:"]
    lines += [f"\t--{f.name}={f.default!s:<10}\t{f.kind}\t{f.help}" for f in FLAGS
              if not f.name.startswith("double_")]  # the double's own flags stay hidden
    return "\n".join(lines) + "\n"


def options_from_flags(values: dict[str, Any]) -> ServerOptions:
    return ServerOptions(
        port=values["port"], grpc_socket_path=values["grpc_socket_path"],
        rest_api_port=values["rest_api_port"] or None,
        rest_api_enable_cors_support=values["rest_api_enable_cors_support"],
        model_name=values["model_name"], model_base_path=values["model_base_path"],
        model_config_file=values["model_config_file"],
        model_config_file_poll_wait_seconds=values["model_config_file_poll_wait_seconds"],
        file_system_poll_wait_seconds=values["file_system_poll_wait_seconds"],
        max_num_load_retries=max(values["max_num_load_retries"], 0),
        load_retry_interval_seconds=max(values["load_retry_interval_micros"], 0) / 1e6,
        enable_batching=values["enable_batching"],
        batching_parameters_file=values["batching_parameters_file"],
        allow_version_labels_for_unavailable_models=values["allow_version_labels_for_unavailable_models"],
        monitoring_config_file=values["monitoring_config_file"],
        load_delay_seconds=max(values["double_load_delay_seconds"], 0.0))


def main(argv: list[str] | None = None) -> int:
    """``tensorflow_model_server`` main(): 255 on bad flags or start-up failure, else serve until killed."""
    argv = sys.argv[1:] if argv is None else argv
    prog = "tensorflow_model_server"
    values, unknown, ok = parse_flags(argv)
    if not ok:
        print(usage(prog), end="", flush=True)
        return 255
    if values["version"]:
        print("TensorFlow ModelServer: 2.21.0-tfserving-double\nTensorFlow Library: 2.21.0", flush=True)
        return 0
    if unknown:  # not fatal: the first leftover argument is reported, then the usage (§2)
        print(f"unknown argument: {unknown[0]}\n{usage(prog)}", end="", flush=True)
    double = TFServingDouble(options=options_from_flags(values), log_stream=sys.stderr)
    try:
        double.start(wait=False)
        while not double.wait_ready(timeout=1.0):
            if double.startup_error is not None:
                print(f"Failed to start server. Error: {double.startup_error}", flush=True)
                return 255
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        double.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
