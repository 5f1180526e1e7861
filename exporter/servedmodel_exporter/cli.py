"""``servedmodel-export``: publish verified SavedModel versions for TF Serving, list and inspect them.

TensorFlow is imported only once a command runs, so ``--help`` and usage errors answer instantly.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .errors import (
    EXIT_INTERNAL,
    EXIT_NO_SPACE,
    EXIT_OK,
    EXIT_PUBLISH,
    EXIT_SOURCE,
    EXIT_SOURCE_UNAVAILABLE,
    EXIT_USAGE,
    EXIT_VERIFICATION,
    EXIT_VERSION_EXISTS,
    ExporterError,
    UsageError,
)

PROG = "servedmodel-export"
log = logging.getLogger("servedmodel_exporter")

EXIT_CODES = f"""\
exit codes:
  {EXIT_OK}  success
  {EXIT_INTERNAL}  unexpected internal error (a bug: please report it with the traceback)
  {EXIT_USAGE}  usage error (bad arguments, sample inputs that do not fit the signature)
  {EXIT_SOURCE}  source error (not found, HTTP 4xx, sha256 mismatch, corrupt or unreadable model)
  {EXIT_VERIFICATION}  verification failed (does not load, signature missing, parity out of tolerance)
  {EXIT_VERSION_EXISTS}  the requested version already exists with another source (versions are immutable)
  {EXIT_PUBLISH}  publish/IO error (base path not writable, lock, rename or retention failed; S3 endpoint
     unreachable or an S3 error other than a missing bucket or refused credentials, which are usage errors)
  {EXIT_NO_SPACE}  no space left (model volume or temporary folder); nothing was published
  {EXIT_SOURCE_UNAVAILABLE}  download failed in a way a retry may fix (connection, timeout, HTTP 5xx/429)
"""

PUBLISH_EPILOG = f"""\
The version folder is built in <base>/<model>/.staging-<pid>-<random> (a name TF Serving ignores), verified,
fsynced, then renamed to <base>/<model>/<version>, so TF Serving only ever sees complete versions. Publishing
is idempotent: a source (by sha256) that is already published is reported as that version, with
"already_published": true, and nothing new is written. Progress goes to stderr; with --json the result
(including the published "version") is the only thing on stdout.

With --to s3://BUCKET/PREFIX the version is exported and verified in a temporary folder, its number is
claimed by creating <prefix>/<model>/.claims/<N> only if absent (so concurrent publishers never take the
same number), its files are uploaded to <prefix>/<model>/<N>/, and the commit marker
<prefix>/<model>/<N>.commit.json (every object's size and sha256, and the manifest) is written last.
Readers such as the operator's sync sidecar take a version only once its marker exists, so a killed upload
is never served ('{PROG} gc' removes what it left).

examples:
  # Keras 3 file, next free version, keep the 3 newest versions plus version 7
  {PROG} publish model.keras --base-path /models --model iris --keep 3 --pin 7

  # download, check the checksum, explicit version, 100 warmup requests, machine-readable result
  {PROG} publish https://example.org/iris.keras --sha256 9f86d08...  --base-path /models \\
      --model iris --version 12 --warmup 100 --json

  # an existing SavedModel folder, parity on your own inputs
  {PROG} publish ./export/saved_model --base-path /models --model iris --sample-inputs x.json

  # into a bucket of an S3-compatible store (credentials from the usual AWS variables or ~/.aws)
  AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... {PROG} publish model.keras \\
      --to s3://models/prod --model iris --endpoint-url http://minio.storage:9000 --keep 3

{EXIT_CODES}"""


IMAGE_EPILOG = f"""\
The registry is reached over HTTPS, or plain HTTP when it is on a loopback address (a local registry).
Credentials come from the Docker config file ($DOCKER_CONFIG/config.json or ~/.docker/config.json, "auths",
as "docker login" writes them). Serve the image with a ServedModel's spec.storage.image.reference.

examples:
  {PROG} image --from /models/iris --image registry.example/models/iris:3
  {PROG} publish model.keras --base-path /models --model iris --keep 1 --image registry.example/models/iris:4
  {PROG} image --from /models/iris --versions 3,4 --image 127.0.0.1:5000/iris:3-4 --oci-layout ./iris-oci

{EXIT_CODES}"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    _configure_logging(args.quiet)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    previous = _terminate_cleanly()
    try:
        return args.command(args)
    except ExporterError as exc:
        return _fail(args, exc, exc.exit_code)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except _Terminated:
        print(f"{PROG}: terminated (SIGTERM); nothing half-published was left behind", file=sys.stderr)
        return 128 + signal.SIGTERM
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class _Terminated(BaseException):
    """SIGTERM (a deleted Job's pod, `kill`): unwinds like Ctrl-C, so the cleanups on the way out run
    (the staging folder removed; in S3 this run's objects and claim removed)."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated()


def _terminate_cleanly():
    """Turn SIGTERM into ``_Terminated`` for this run; returns the previous handler (None: not changed,
    e.g. when called outside the main thread)."""
    try:
        return signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:
        return None


def _location(args: argparse.Namespace, where: str | None):
    """An S3Location for an s3:// URL (with --endpoint-url/--region or the AWS_* variables), else None."""
    from .objectstore.url import is_s3_url, parse_s3_url

    if is_s3_url(where):
        return parse_s3_url(where, args.endpoint_url, args.region)
    if args.endpoint_url or args.region:
        raise UsageError("--endpoint-url and --region apply to s3:// locations only")
    return None


def _publish(args: argparse.Namespace) -> int:
    from .pipeline import PublishRequest, publish

    if (args.base_path is None) == (args.to is None):
        raise UsageError(
            "give exactly one destination: --base-path DIR (a volume) or --to s3://BUCKET/PREFIX"
        )
    location = _location(args, args.to or args.base_path)
    if args.to and location is None:
        raise UsageError(f"--to takes an s3://BUCKET/PREFIX URL, got {args.to!r}; for a folder: --base-path")
    if location is not None and args.image:
        raise UsageError("--image pushes versions from a volume (--base-path); it does not read from S3")
    request = PublishRequest(
        source=args.source,
        base_path=Path(args.base_path) if location is None else Path(),
        model=args.model,
        version=args.version,
        sha256=args.sha256,
        signature=args.signature,
        sample_inputs=args.sample_inputs,
        atol=args.atol,
        rtol=args.rtol,
        warmup_records=args.warmup,
        keep=args.keep,
        pins=tuple(args.pin),
    )
    if location is not None:
        from .pipeline_s3 import publish_s3

        result = publish_s3(request, location)
    else:
        result = publish(request)
    _report_published(args, result)
    return EXIT_OK


def _report_published(args: argparse.Namespace, result: Any) -> None:
    """The result file, the optional image push, and the result on stdout."""
    _write_result_file(
        args,
        {
            "ok": True,
            "version": result.version,
            "path": str(result.path),
            "already_published": result.already_published,
            "tensorflow_version": result.tensorflow_version,
        },
    )
    pushed = None
    if args.image:
        pushed = _push_image(Path(args.base_path), args.model, None, args.image, args.oci_layout)
    if args.json:
        _print_json({"ok": True, **result.to_dict(), **({"image": pushed} if pushed else {})})
        return
    if result.already_published:
        print(f"{result.model} version {result.version} was published from this source before: {result.path}")
    else:
        print(f"published {result.model} version {result.version} at {result.path}")
        if result.removed_versions:
            print(f"removed old versions: {', '.join(map(str, result.removed_versions))}")
    if pushed:
        _print_pushed(pushed)


def _push_image(
    base_path: Path, model: str, versions: list[int] | None, image: str, oci_layout: Path | None
) -> dict[str, Any]:
    """Write the model's versions as an OCI image (in ``oci_layout`` or a temporary folder) and push it."""
    import tempfile

    from .oci import modelimage, reference, registry

    ref = reference.parse(image)
    if ref.digest:
        raise UsageError(f"--image names a tag to push to, not a digest: {image}")
    with tempfile.TemporaryDirectory(prefix="servedmodel-image-") as work:
        layout = oci_layout or Path(work)
        log.info("writing the image of %s into %s", model, layout)
        built = modelimage.build(base_path, model, layout, versions, ref_name=ref.tag)
        log.info("pushing %s", ref)
        pushed = registry.push(built.image, ref)
    return {"reference": str(pushed), **built.summary()}


def _print_pushed(pushed: dict[str, Any]) -> None:
    versions = ", ".join(map(str, pushed["versions"]))
    print(
        f"pushed {pushed['reference']}: {pushed['model']} version(s) {versions} at {pushed['path']}/, "
        f"{pushed['image_bytes']} bytes in the registry ({pushed['model_bytes']} bytes of SavedModel)"
    )


def _image(args: argparse.Namespace) -> int:
    source = Path(args.from_path)
    pushed = _push_image(source.parent, source.name, args.versions, args.image, args.oci_layout)
    if args.json:
        _print_json({"ok": True, "image": pushed})
    else:
        _print_pushed(pushed)
    return EXIT_OK


def _versions(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected version numbers separated by commas, got {text!r}")
    return values


def _list(args: argparse.Namespace) -> int:
    from .inspection import render_table

    location = _location(args, args.base_path)
    incomplete: list[int] = []
    if location is not None:
        from .objectstore.describe import list_versions as list_s3

        found = list_s3(location, args.model)
        entries, incomplete = found["versions"], found["incomplete"]
    else:
        from .inspection import list_versions

        entries = list_versions(Path(args.base_path), args.model)
    if args.json:
        extra = {"incomplete": incomplete} if location is not None else {}
        _print_json({"ok": True, "model": args.model, "versions": entries, **extra})
        return EXIT_OK
    print(render_table(entries) if entries else f"no versions of {args.model} under {args.base_path}")
    if incomplete:
        print(
            f"incomplete (claimed or partly uploaded, no commit marker; never served): "
            f"{', '.join(map(str, incomplete))}; '{PROG} gc' removes interrupted ones"
        )
    return EXIT_OK


def _inspect(args: argparse.Namespace) -> int:
    from .inspection import inspect_path, render_details

    location = _location(args, args.path)
    if location is not None:
        from .objectstore.describe import inspect_url

        entries = inspect_url(location)
    else:
        entries = inspect_path(Path(args.path))
    if args.json:
        _print_json({"ok": True, "versions": entries})
    else:
        print(render_details(entries) if entries else f"no versions under {args.path}")
    return EXIT_OK


def _gc(args: argparse.Namespace) -> int:
    import datetime as dt

    from .objectstore.publisher import S3Publisher

    location = _location(args, args.to)
    if location is None:
        raise UsageError(
            f"gc works on s3:// locations, got {args.to!r} (publish cleans a volume's leftovers itself)"
        )
    publisher = S3Publisher(location, args.model)
    publisher.check_bucket()
    removed = publisher.gc(dt.timedelta(seconds=args.older_than), dry_run=args.dry_run)
    if args.json:
        _print_json({"ok": True, "model": args.model, "removed": removed, "dry_run": args.dry_run})
    elif removed:
        verb = "would remove" if args.dry_run else "removed"
        print(f"{verb} uncommitted version(s) of {args.model}: {', '.join(map(str, removed))}")
    else:
        print(f"nothing to remove: no uncommitted version of {args.model} older than {args.older_than}s")
    return EXIT_OK


def _fail(args: argparse.Namespace, exc: Exception, code: int) -> int:
    print(f"{PROG}: error: {exc}", file=sys.stderr)
    _write_result_file(args, {"ok": False, "error": str(exc)[:2000], "exit_code": code})
    if args.json:
        _print_json(
            {"ok": False, "error": {"type": type(exc).__name__, "message": str(exc), "exit_code": code}}
        )
    return code


def _configure_logging(quiet: bool) -> None:
    """Progress lines of this package only, on the current stderr (stdout is reserved for results)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(message)s"))
    log.handlers = [handler]
    log.propagate = False
    log.setLevel(logging.WARNING if quiet else logging.INFO)


def _write_result_file(args: argparse.Namespace, payload: dict[str, Any]) -> None:
    """A short result for whoever started us; in a Job, /dev/termination-log (at most 4 KiB)."""
    path = getattr(args, "result_file", None)
    if path is not None:
        Path(path).write_text(json.dumps(payload, separators=(",", ":"), sort_keys=True)[:4096])


def _print_json(payload: dict[str, Any]) -> None:
    print(json.dumps(payload, indent=2, sort_keys=True))


def _version(text: str) -> int | None:
    if text == "auto":
        return None
    if not text.isdigit() or int(text) >= 2**63:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a non-negative integer, got {text!r}")
    return int(text)


def _non_negative_int(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return int(text)


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("expected at least 1")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Publish verified, versioned SavedModels for TensorFlow Serving, atomically.",
        epilog=f"Run '{PROG} COMMAND --help' for each command's options and examples.\n\n{EXIT_CODES}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print a machine-readable result on stdout")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress output on stderr")
    s3 = common.add_argument_group("object storage (s3:// locations)")
    s3.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="the S3 API of an S3-compatible store, e.g. http://minio.storage:9000 "
        "(default: $AWS_ENDPOINT_URL, else AWS S3). Credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
        "AWS_PROFILE or ~/.aws, as every AWS tool reads them",
    )
    s3.add_argument("--region", help="the bucket's region (default: $AWS_REGION, else us-east-1)")

    def command(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        """A subcommand with the common options; its description and examples are shown as written."""
        return commands.add_parser(
            name, parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter, **kwargs
        )

    pub = command(
        "publish",
        help="export/verify a model and publish it as a new version",
        description="Export a Keras model (.keras, legacy .h5) or copy a SavedModel folder, verify it and "
        "publish it atomically as <base>/<model>/<version>/.",
        epilog=PUBLISH_EPILOG,
    )
    pub.add_argument("source", help="a .keras or .h5 file, a SavedModel folder, or an http(s) URL of a file")
    destination = pub.add_mutually_exclusive_group(required=True)
    destination.add_argument(
        "--base-path", metavar="DIR", help="root of the model repository on a (shared) volume"
    )
    destination.add_argument(
        "--to",
        metavar="s3://BUCKET/PREFIX",
        help="publish into S3-compatible object storage instead: versions go to "
        "<prefix>/<model>/<version>/, and the commit marker <prefix>/<model>/<version>.commit.json last",
    )
    pub.add_argument("--model", required=True, help="model name: versions go to <base>/<model>/<version>/")
    pub.add_argument(
        "--version",
        type=_version,
        default=None,
        metavar="auto|N",
        help="'auto' (default): one more than the highest published version; N: exactly N",
    )
    pub.add_argument(
        "--sha256", help="expected sha256 of the source file (of the folder digest for a folder)"
    )
    pub.add_argument(
        "--signature", default="serving_default", help="signature to verify (default: %(default)s)"
    )
    pub.add_argument(
        "--sample-inputs",
        type=Path,
        metavar="FILE",
        help='parity inputs: .npy (single-input signature) or JSON {"input": [...]}; '
        "default: generated from the signature with a fixed seed",
    )
    pub.add_argument(
        "--atol", type=float, default=1e-5, help="absolute parity tolerance (default: %(default)s)"
    )
    pub.add_argument(
        "--rtol", type=float, default=1e-5, help="relative parity tolerance (default: %(default)s)"
    )
    pub.add_argument(
        "--warmup",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="write N (<= 1000) warmup requests to assets.extra/tf_serving_warmup_requests",
    )
    pub.add_argument(
        "--keep",
        type=_positive_int,
        metavar="N",
        help="after publishing, remove the oldest versions beyond the N highest",
    )
    pub.add_argument(
        "--pin",
        type=_non_negative_int,
        action="append",
        default=[],
        metavar="V",
        help="never remove version V with --keep (repeatable, e.g. versions a 'specific' policy serves)",
    )
    pub.add_argument(
        "--result-file",
        type=Path,
        metavar="FILE",
        help="also write a short JSON result (ok, version, path or error) to FILE; the operator's export "
        "Job uses /dev/termination-log, where Kubernetes keeps it in the pod status",
    )
    pub.add_argument(
        "--image",
        metavar="REF",
        help="also push the model's published versions as an OCI image to REF "
        f"(registry/repository:tag; see '{PROG} image --help')",
    )
    pub.add_argument(
        "--oci-layout", type=Path, metavar="DIR", help="with --image: keep the image's OCI layout in DIR"
    )
    pub.set_defaults(command=_publish)

    img = command(
        "image",
        help="push published versions as an OCI image (no container daemon needed)",
        description="Write the published versions of <base>/<model> as an OCI image (the versions under "
        "/models/<model>/<version>/, one layer each, and the 300-byte modelcar program; no OS layer) "
        "and push it to a registry with the OCI distribution API. The same versions give the same digest.",
        epilog=IMAGE_EPILOG,
    )
    img.add_argument(
        "--from",
        dest="from_path",
        required=True,
        metavar="BASE/MODEL",
        help="the model folder whose numeric version folders go into the image",
    )
    img.add_argument("--image", required=True, metavar="REF", help="where to push: registry/repository:tag")
    img.add_argument(
        "--versions", type=_versions, metavar="V[,V...]", help="only these versions (default: every one)"
    )
    img.add_argument("--oci-layout", type=Path, metavar="DIR", help="keep the image's OCI layout in DIR")
    img.set_defaults(command=_image)

    lst = command(
        "list",
        help="list published versions of a model (on a volume or in S3)",
        description="List the published versions of a model. In S3 only versions with a commit marker "
        "count; numbers that are claimed or partly uploaded are shown apart as incomplete.",
        epilog=f"examples:\n  {PROG} list --base-path /models --model iris --json\n"
        f"  {PROG} list --base-path s3://models/prod --model iris --endpoint-url http://127.0.0.1:8333",
    )
    lst.add_argument(
        "--base-path", "--to", dest="base_path", required=True, metavar="DIR|s3://BUCKET/PREFIX",
        help="the model repository: a folder, or an S3 location (--to is the same option)",
    )
    lst.add_argument("--model", required=True)
    lst.set_defaults(command=_list)

    ins = command(
        "inspect",
        help="show manifest and signatures of a version folder or of every version of a model folder",
        epilog=f"examples:\n  {PROG} inspect /models/iris/3\n  {PROG} inspect /models/iris --json\n"
        f"  {PROG} inspect s3://models/prod/iris/3 --endpoint-url http://127.0.0.1:8333",
    )
    ins.add_argument(
        "path",
        help="<base>/<model>/<version> or <base>/<model>; in S3: s3://BUCKET/PREFIX/MODEL[/VERSION]",
    )
    ins.set_defaults(command=_inspect)

    gc = command(
        "gc",
        help="remove what interrupted S3 publishes left (never a committed version)",
        description="Remove the objects and claims of versions that have no commit marker and were not "
        "written to for --older-than seconds: uploads that were killed. Such versions are never served; "
        "this only frees their space and numbers. Versions with a commit marker are never touched.",
        epilog=f"example:\n  {PROG} gc --to s3://models/prod --model iris --older-than 3600 --dry-run",
    )
    gc.add_argument("--to", "--base-path", dest="to", required=True, metavar="s3://BUCKET/PREFIX")
    gc.add_argument("--model", required=True)
    gc.add_argument(
        "--older-than",
        type=_non_negative_int,
        default=3600,
        metavar="SECONDS",
        help="only versions untouched this long: a younger one may be a live upload (default: %(default)s)",
    )
    gc.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    gc.set_defaults(command=_gc)
    return parser


if __name__ == "__main__":
    sys.exit(main())
