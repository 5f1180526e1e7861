"""The command line: ``tensorflow_model_server``'s flags with ``tensorflow::Flags`` semantics (§2, §3)."""

from __future__ import annotations

import dataclasses
import re
import sys
from typing import Any

from .options import ALL_INTERFACES, ServerOptions


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


def options_from_flags(values: dict[str, Any], bind_address: str = ALL_INTERFACES) -> ServerOptions:
    """The program's options: like the real server it listens on every interface unless told otherwise."""
    both_parallelism = values["tensorflow_session_parallelism"]
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
        load_delay_seconds=max(values["double_load_delay_seconds"], 0.0), bind_address=bind_address,
        saved_model_tags=tuple(t for t in values["saved_model_tags"].split(",") if t),
        enable_model_warmup=values["enable_model_warmup"],
        num_request_iterations_for_warmup=max(values["num_request_iterations_for_warmup"], 1),
        intra_op_parallelism=max(values["tensorflow_intra_op_parallelism"] or both_parallelism, 0),
        inter_op_parallelism=max(values["tensorflow_inter_op_parallelism"] or both_parallelism, 0),
        grpc_max_threads=max(values["grpc_max_threads"], 1))

