"""``tensorflow_model_server`` main(): exit 255 on bad flags or a failed start-up, else serve until killed."""

from __future__ import annotations

import os
import sys
import threading

from .flags import options_from_flags, parse_flags, usage
from .options import ALL_INTERFACES
from .server import TFServingDouble

# The address both ports bind. The real server has no such setting and binds every interface (§1.1); tests
# that run the program set this to 127.0.0.1 so they listen on loopback only.
BIND_ADDRESS_ENV = "TFSERVING_DOUBLE_BIND_ADDRESS"


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
    options = options_from_flags(values, os.environ.get(BIND_ADDRESS_ENV) or ALL_INTERFACES)
    double = TFServingDouble(options=options, log_stream=sys.stderr)
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

