"""The options of one server: the ``tensorflow_model_server`` flags the double honours, by flag name."""

from __future__ import annotations

import dataclasses

LOOPBACK = "127.0.0.1"
ALL_INTERFACES = "0.0.0.0"


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
    saved_model_tags: tuple[str, ...] = ("serve",)
    enable_model_warmup: bool = True
    num_request_iterations_for_warmup: int = 1
    # Session threads (--tensorflow_intra_op_parallelism / inter_op; --tensorflow_session_parallelism sets
    # both); 0 lets TensorFlow choose. gRPC handler threads (--grpc_max_threads).
    intra_op_parallelism: int = 0
    inter_op_parallelism: int = 0
    grpc_max_threads: int = 16
    # Double only. The real server binds every interface and has no flag for it (§1.1); in-process doubles
    # default to loopback, the program (and so the container) to all interfaces, like the real one.
    bind_address: str = LOOPBACK
