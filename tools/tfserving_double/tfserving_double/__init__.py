"""A protocol-faithful stand-in for TensorFlow Serving's ``tensorflow_model_server``.

It follows ``/work/shared/reference/tfserving.md`` (the "§" numbers in comments point into it): flags and
exit codes, the start-up wait, version polling, labels, the REST API and its errors, model status and
metadata from the official protos, and Prometheus metrics. Run it as a program (``python -m
tfserving_double`` or the ``tensorflow_model_server`` launcher beside this package) or in-process with
``TFServingDouble``. See ``docs/tfserving-double.md``.

Modules, each for one job: ``flags`` and ``cli`` (command line), ``options``, ``model_config``,
``version_dirs`` (file-system source), ``manager`` (states, loads, labels), ``servable`` (a loaded version:
signatures and a TensorFlow session), ``warmup``, ``inference`` (running signatures), ``fake_inference``
(placeholder versions), ``tensors``, ``json_text`` and ``json_tensors`` (values and JSON in and out),
``rest_api`` (``/v1`` routing), ``http_server`` (the listener), ``grpc_service``, ``status_metadata``,
``metrics``, ``server`` (start-up and loops).
"""

from .cli import main
from .errors import CODES, HTTP_FOR_CODE, STATES, StartupError, TFError
from .flags import FLAGS, options_from_flags, parse_flags, usage
from .manager import ModelManager, VersionRecord
from .metrics import Metrics
from .model_config import ModelSpecConfig, load_model_config_file
from .options import ServerOptions
from .server import TFServingDouble
from .version_dirs import parse_version_dir

__all__ = [
    "CODES", "FLAGS", "HTTP_FOR_CODE", "STATES", "Metrics", "ModelManager", "ModelSpecConfig",
    "ServerOptions", "StartupError", "TFError", "TFServingDouble", "VersionRecord", "load_model_config_file",
    "main", "options_from_flags", "parse_flags", "parse_version_dir", "usage",
]
