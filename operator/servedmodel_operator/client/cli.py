"""`servedmodel` (and `kubectl servedmodel`): predict, status, list."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from . import api
from .errors import ClientError, ModelServerError, UsageError
from .tables import list_table, status_text

EXIT_CODES = """exit codes:
  0  success
  1  other failure (API server unreachable, unexpected answer)
  2  usage: bad arguments or --instances, gRPC from outside the cluster
  3  no such ServedModel in the namespace (or the ServedModel API is not installed)
  4  the model server refused the request: TF Serving's message is printed as it is
     (bad input, unknown version or label)
  5  not allowed: the API server refused your credentials (401) or a right is missing (403)
  6  not ready: nothing answers for the ServedModel yet (no ready model server)
"""

MAIN_HELP = """Call TensorFlow models served by servedmodel-operator, by the ServedModel's name.

From a laptop, requests go through the Kubernetes API server's service proxy with your kubeconfig's
credentials (no port-forward, nothing exposed); from a pod, straight to the model's Service.

examples:
  servedmodel list
  servedmodel status resnet -n vision
  servedmodel predict resnet -n vision --instances '[[1.0, 2.0, 3.0, 4.0]]'
  kubectl servedmodel predict resnet --instances @batch.json --label stable
"""

PREDICT_HELP = (
    """Send instances to a ServedModel's :predict and print its outputs as JSON, by output name.

examples:
  servedmodel predict demo --instances '[[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 0.0, 2.0]]'
  servedmodel predict demo -n models --instances @batch.json --version 2
  servedmodel predict demo --instances '[{"image": [[0.1]], "mask": [[1]]}]' --label canary
  servedmodel predict demo --instances @- < batch.json           # from standard input
  servedmodel predict demo --instances '[[1, 2, 3, 4]]' --grpc   # in a pod: gRPC to the Service

--instances is TF Serving's row format: a JSON list with one entry per example (an object
{"<input>": value} per example for models with several inputs). A file may also hold a whole request
body, {"instances": [...]}.

Output: {"<output name>": [...], ...}; the name of a single output comes from the model's signature.

rights needed (outside the cluster): get on servedmodels.servedmodel.io, and create on services/proxy,
in the namespace.

"""
    + EXIT_CODES
)


def _instances(text: str) -> Any:
    source = "--instances"
    if text.startswith("@"):
        source = text[1:]
        try:
            text = sys.stdin.read() if source == "-" else Path(source).read_text()
        except OSError as exc:
            raise UsageError(f"cannot read --instances file: {exc}") from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{source} is not JSON: {exc}") from exc
    if isinstance(doc, dict) and "instances" in doc:
        doc = doc["instances"]
    if not isinstance(doc, list) or not doc:
        raise UsageError(f'{source} must be a non-empty JSON list of instances, or {{"instances": [...]}}')
    return doc


def _parser(prog: str) -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog=prog, description=MAIN_HELP, epilog=EXIT_CODES, formatter_class=raw)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-n", "--namespace", help="the namespace (default: your kubeconfig context's)")
    common.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    common.add_argument("--context", help="kubeconfig context (default: the current one)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "predict",
        parents=[common],
        help="call a ServedModel's :predict",
        description=PREDICT_HELP,
        formatter_class=raw,
    )
    p.add_argument("name", metavar="NAME", help="the ServedModel")
    p.add_argument(
        "--instances",
        required=True,
        metavar="JSON|@FILE",
        help="a JSON list of instances, @file with one, or @- for standard input",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--version", type=int, metavar="N", help="a specific version (default: the latest)")
    which.add_argument("--label", metavar="L", help="a version label of the ServedModel (spec.versionLabels)")
    p.add_argument("--signature", default="serving_default", help="signature name (default: %(default)s)")
    p.add_argument("--grpc", action="store_true", help="use TF Serving's gRPC API (in the cluster only)")
    p.add_argument(
        "--via",
        choices=["auto", "proxy", "direct"],
        default="auto",
        help="proxy: through the API server; direct: to the Service's DNS name; auto (default): "
        "direct in a pod, proxy elsewhere",
    )
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default: %(default)s)")

    s = sub.add_parser(
        "status",
        parents=[common],
        help="versions, labels, conditions and endpoints",
        description="Show a ServedModel: the versions TF Serving reports and their labels, its "
        "conditions, export and endpoints.\n\nexample:\n  servedmodel status resnet -n vision",
        formatter_class=raw,
    )
    s.add_argument("name", metavar="NAME", help="the ServedModel")
    s.add_argument("-o", "--output", choices=["table", "json"], default="table")

    ls = sub.add_parser(
        "list",
        parents=[common],
        help="the ServedModels of a namespace",
        description="List ServedModels with their readiness and the versions served.\n\n"
        "examples:\n  servedmodel list\n  servedmodel list -A",
        formatter_class=raw,
    )
    ls.add_argument("-A", "--all-namespaces", action="store_true", help="in every namespace")
    return parser


def run(args: argparse.Namespace) -> None:
    where = {"namespace": args.namespace, "kubeconfig": args.kubeconfig, "context": args.context}
    if args.command == "predict":
        outputs = api.predict(
            args.name,
            _instances(args.instances),
            version=args.version,
            label=args.label,
            grpc=args.grpc,
            signature_name=args.signature,
            via=args.via,
            timeout=args.timeout,
            **where,
        )
        print(json.dumps({name: plain(array) for name, array in outputs.items()}, default=_bytes))
    elif args.command == "status":
        sm = api.status(args.name, **where)
        print(json.dumps(sm, indent=2) if args.output == "json" else status_text(sm))
    else:
        items = api.list_models(all_namespaces=args.all_namespaces, **where)
        if not items:
            scope = "any namespace" if args.all_namespaces else "this namespace"
            print(f"No ServedModels found in {scope}.", file=sys.stderr)
        else:
            print(list_table(items, args.all_namespaces))


def plain(array: np.ndarray) -> Any:
    """JSON values of an output; float32 as its shortest decimal (3.9, not 3.9000000953674316)."""
    if array.dtype in (np.float32, np.float16) and array.size:
        shortest = [float(str(v)) for v in array.reshape(-1)]  # str() of a NumPy float32 scalar
        return np.array(shortest, dtype=object).reshape(array.shape).tolist()
    return array.tolist()


def _bytes(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    raise TypeError(f"cannot print {type(value).__name__}")


def main(argv: list[str] | None = None) -> int:
    prog = Path(sys.argv[0]).name
    prog = "kubectl servedmodel" if prog.startswith("kubectl-") else "servedmodel"
    args = _parser(prog).parse_args(argv)
    try:
        run(args)
    except ModelServerError as exc:
        print(f"error: the model server answered ({exc.status}): {exc}", file=sys.stderr)
        return exc.exit_code
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return 0


def kubectl_plugin() -> int:
    """`kubectl servedmodel ...`: kubectl runs `kubectl-servedmodel` from PATH with the arguments after the
    plugin's name (its own flags are not passed on: --kubeconfig, --context and -n are ours)."""
    return main()
