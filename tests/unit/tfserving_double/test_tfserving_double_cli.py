"""Reference §2, §3: the command line, run as users run it (a subprocess), and its exit codes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from tfsd_helpers import DOUBLE_DIR, add_version, listening_addresses, port_open, wait_until
from tfserving_double import options_from_flags, parse_flags

LAUNCHER = DOUBLE_DIR / "tensorflow_model_server"  # the image installs it as /usr/bin/tensorflow_model_server
# The program binds every interface by default, like the real server; these tests keep it on loopback.
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TFSERVING_DOUBLE_BIND_ADDRESS": "127.0.0.1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class _Served:
    proc: subprocess.Popen[str]
    out: str = ""  # what it printed, once stopped
    err: str = ""


@contextmanager
def _serving(args: list[str], rest: int, env: dict[str, str] = ENV) -> Iterator[_Served]:
    """The program started with `args`, once its REST port `rest` accepts connections; stopped after."""
    proc = subprocess.Popen(
        [sys.executable, str(LAUNCHER), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    served = _Served(proc)
    try:
        assert wait_until(lambda: port_open(rest) or proc.poll() is not None, timeout=40)
        assert proc.poll() is None, proc.communicate()
        yield served
    finally:
        proc.terminate()
        served.out, served.err = proc.communicate(timeout=10)


def _run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(LAUNCHER), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
        check=False,
    )


@pytest.mark.parametrize(
    "arg",
    [
        "--port=abc",
        "--enable_batching=1",
        "--rest_api_port=1.5",
        "--file_system_poll_wait_seconds=",
        "--enable_model_warmup=yes",
        "--port=99999999999",
    ],
)
def test_bad_flag_value_exits_255_with_usage(arg: str) -> None:
    p = _run(arg, "--model_base_path=/nonexistent")
    assert p.returncode == 255
    assert "usage:" in p.stdout and "--rest_api_port" in p.stdout
    assert "Failed to start server" not in p.stdout


def test_no_model_exits_255() -> None:
    p = _run()
    assert p.returncode == 255
    assert p.stdout.strip().endswith(
        "Failed to start server. Error: INVALID_ARGUMENT: Both "
        "server_options.model_base_path and server_options.model_config_file "
        "are empty!"
    )


def test_unknown_arguments_are_reported_not_fatal() -> None:
    """``--port 8500`` (space form) does not match the int flag: reported as unknown, start-up goes on."""
    p = _run("--port", "8500", "--no_such_flag=1")
    assert "unknown argument: --port\n" in p.stdout and "usage:" in p.stdout
    assert "Both server_options.model_base_path and server_options.model_config_file are empty!" in p.stdout
    assert p.returncode == 255


def test_batching_file_requires_enable_batching(tmp_path: Path) -> None:
    bp = tmp_path / "batching.config"
    bp.write_text("max_batch_size { value: 128 }\nbatch_timeout_micros { value: 0 }\n")
    p = _run(f"--batching_parameters_file={bp}", "--model_base_path=/models/m")
    assert p.returncode == 255
    assert (
        "Failed to start server. Error: INVALID_ARGUMENT: server_options.batching_parameters_file is set "
        "without setting server_options.enable_batching to true."
    ) in p.stdout
    bad = tmp_path / "bad.config"
    bad.write_text("max_batch_size: 128\n")  # wrappers need { value: N }
    p = _run("--enable_batching", f"--batching_parameters_file={bad}", "--model_base_path=/models/m")
    assert p.returncode == 255 and f"Invalid protobuf file: '{bad}'" in p.stdout


def test_invalid_model_config_exits_255(tmp_path: Path) -> None:
    cfg = tmp_path / "models.config"
    cfg.write_text("model_config_list { config { name: 'm' base_path: '/x' bogus: 1 } }")
    p = _run(f"--model_config_file={cfg}")
    assert p.returncode == 255
    assert f"Failed to start server. Error: INVALID_ARGUMENT: Invalid protobuf file: '{cfg}'" in p.stdout


def test_port_zero_without_socket_path_exits_255() -> None:
    p = _run("--port=0", "--model_base_path=/models/m")
    assert p.returncode == 255 and "server_options.grpc_socket_path must be set" in p.stdout


def test_version_flag() -> None:
    p = _run("--version")
    assert p.returncode == 0 and p.stdout.startswith("TensorFlow ModelServer: ")


def test_initial_load_failure_exits_255(tmp_path: Path) -> None:
    base = tmp_path / "m"
    add_version(base, 1, loadable=False)
    grpc, rest = _free_port(), _free_port()
    p = _run(
        f"--port={grpc}",
        f"--rest_api_port={rest}",
        "--model_name=m",
        f"--model_base_path={base}",
        "--max_num_load_retries=0",
        timeout=60,
    )
    assert p.returncode == 255
    assert "Failed to start server. Error: UNKNOWN: Some models did not become available: {m}" in p.stdout
    assert "cannot be loaded: NOT_FOUND: Could not find SavedModel" in p.stderr


def test_serves_and_last_flag_wins(tmp_path: Path) -> None:
    base = tmp_path / "m"
    add_version(base, 3)
    bp = tmp_path / "batching.config"
    bp.write_text("max_batch_size { value: 8 }\nallowed_batch_sizes: 8\n")
    mon = tmp_path / "monitoring.config"
    mon.write_text("prometheus_config { enable: true }\n")
    grpc, rest = _free_port(), _free_port()
    args = [
        f"--port={grpc}",
        "--rest_api_port=1",
        f"--rest_api_port={rest}",
        "--model_name=m",
        f"--model_base_path={base}",
        "--enable_batching",
        f"--batching_parameters_file={bp}",
        f"--monitoring_config_file={mon}",
        "--unknown_flag=x",
    ]
    with _serving(args, rest) as served:
        assert port_open(grpc)
        r = requests.get(f"http://127.0.0.1:{rest}/v1/models/m", timeout=5)
        assert r.json()["model_version_status"][0] == {
            "version": "3",
            "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""},
        }
        metrics = requests.get(f"http://127.0.0.1:{rest}/monitoring/prometheus/metrics", timeout=5)
        assert metrics.status_code == 200
    assert served.out.startswith("unknown argument: --unknown_flag=x\n")
    err = served.err
    assert "Running gRPC ModelServer at" in err and f"Exporting HTTP/REST API at:localhost:{rest}" in err


def test_flag_parsing_rules() -> None:
    values, unknown, ok = parse_flags(
        [
            "--rest_api_port=8501",
            "--rest_api_port=9000",
            "--enable_batching",
            "--enable_model_warmup=false",
            "-port=1",
            "--port",
            "--model_name=",
            "--double_load_delay_seconds=0.5",
        ]
    )
    assert ok and unknown == ["-port=1", "--port"]
    flags = (values["rest_api_port"], values["enable_batching"], values["enable_model_warmup"])
    assert flags == (9000, True, False)
    assert values["model_name"] == "" and values["port"] == 8500
    assert options_from_flags(values).load_delay_seconds == 0.5
    opts = options_from_flags(parse_flags([])[0])
    assert opts.rest_api_port is None, "REST is off by default (--rest_api_port=0)"
    polls = (opts.file_system_poll_wait_seconds, opts.model_config_file_poll_wait_seconds)
    assert (opts.port, *polls) == (8500, 1, 0)
    assert (opts.max_num_load_retries, opts.load_retry_interval_seconds) == (5, 60.0)
    assert opts.bind_address == "0.0.0.0", "the program listens on every interface, like the real server"


def test_program_listens_on_every_interface_by_default(tmp_path: Path) -> None:
    """In a pod the kubelet's probes and the Service reach the pod's IP, so the program binds 0.0.0.0 like
    the real server (§1.1). Checked from /proc; the test itself only connects over loopback."""
    base = tmp_path / "m"
    add_version(base, 1)
    grpc, rest = _free_port(), _free_port()
    env = {k: v for k, v in ENV.items() if k != "TFSERVING_DOUBLE_BIND_ADDRESS"}
    args = [f"--port={grpc}", f"--rest_api_port={rest}", "--model_name=m", f"--model_base_path={base}"]
    with _serving(args, rest, env) as served:
        assert listening_addresses(rest) == {"0.0.0.0"}
        assert listening_addresses(grpc) in ({"0.0.0.0"}, {"::"}), "gRPC's wildcard may be dual-stack"
    assert f"Running gRPC ModelServer at 0.0.0.0:{grpc}" in served.err


def test_session_threads_and_tags_flags() -> None:
    values, unknown, ok = parse_flags(
        [
            "--tensorflow_session_parallelism=2",
            "--tensorflow_inter_op_parallelism=1",
            "--grpc_max_threads=3",
            "--saved_model_tags=serve,gpu",
        ]
    )
    opts = options_from_flags(values)
    assert ok and not unknown
    assert (opts.intra_op_parallelism, opts.inter_op_parallelism, opts.grpc_max_threads) == (2, 1, 3)
    assert opts.saved_model_tags == ("serve", "gpu")
