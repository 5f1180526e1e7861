"""Builds the images the product ships from the repository's Dockerfiles, with no container daemon and no
image registry, and caches each as an OCI archive keyed by everything that went into it.

    build("operator") -> BuiltImage(ref="localhost/servedmodel/operator:0.1.0-<key12>", archive=...)

How: a Python base image is made from Debian packages (mmdebstrap, Python at /usr/local as in the public
python image) and imported with buildah; the Python packages come from a wheelhouse downloaded on the host
from the lock files (hash-checked), mounted into `buildah bud` with `--no-index`, so an image holds exactly
the locked versions. Each build sees a context holding only its declared inputs, so the key (a hash of the
Dockerfile, those inputs, the base's key and this module's recipe) covers all it can read. A rerun with the
same inputs returns the cached archive without calling buildah.

CLI: ``python tools/images/images.py [NAME ...]`` (``make images``) builds and prints ref and archive.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]
CACHE = Path(
    os.environ.get("SERVEDMODEL_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "servedmodel-operator"
)
IMAGES_DIR = CACHE / "images"
WHEELS_DIR = CACHE / "wheels"
# buildah's own storage, apart from the host's default one (other tools on the machine may use that).
STORAGE = IMAGES_DIR / "storage"
# Its run-time state (locks, mounts) belongs to that storage alone: one run root per storage folder
# (a cache elsewhere, SERVEDMODEL_CACHE, gets its own).
_DEFAULT_STORAGE = Path.home() / ".cache/servedmodel-operator/images/storage"
_STORAGE_ID = hashlib.sha256(str(STORAGE).encode()).hexdigest()[:8]
RUNROOT = Path("/run/servedmodel-operator") / (
    "buildah" if STORAGE == _DEFAULT_STORAGE else f"buildah-{_STORAGE_ID}"
)
REPOSITORY = "localhost/servedmodel"
# Bump when the way images are built changes in a way the inputs do not show.
RECIPE = "5"
BASE_RECIPE = "4"
# Archives kept per image name (the most recently used); older ones are deleted after a build.
KEEP_ARCHIVES = 4

# The Python base: Debian bookworm's python3 (3.11, like the venv) in a minimal root file system.
BASE_SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates", "passwd")
# Documentation, manuals and translations are left out, as the slim public images do.
BASE_DPKG_OPTS = (
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
)
# A venv at /usr/local, so `pip install` works system-wide as in the public python image.
BASE_HOOKS = ('chroot "$1" python3 -m venv /usr/local',)
BASE_ENV = {
    "PATH": "/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}
# Fixed file times in the base's root file system, so rebuilding it changes no more than the packages do.
SOURCE_DATE_EPOCH = "1700000000"


@dataclasses.dataclass(frozen=True)
class Spec:
    """How one image is built: its Dockerfile, the repository paths its build may read, its base."""

    name: str
    dockerfile: str
    inputs: tuple[str, ...]
    base: str  # "base" (Debian + Python) or the name of another Spec
    locks: tuple[str, ...]  # lock files whose wheels the build installs


# (The Dockerfiles give the package a stub README: documentation edits rebuild nothing.)
_SOURCES = ("pyproject.toml", "operator", "exporter", "requirements/build.lock")
SPECS = {
    s.name: s
    for s in (
        # The locked TensorFlow stack, shared below the exporter and the model-server stand-in.
        Spec(
            "tf-runtime",
            "tools/images/tf-runtime.Dockerfile",
            ("requirements/exporter.lock",),
            "base",
            ("requirements/exporter.lock",),
        ),
        Spec(
            "operator",
            "operator/Dockerfile",
            _SOURCES + ("requirements/operator.lock",),
            "base",
            ("requirements/operator.lock", "requirements/build.lock"),
        ),
        Spec(
            "exporter",
            "exporter/Dockerfile",
            _SOURCES + ("requirements/exporter.lock",),
            "tf-runtime",
            ("requirements/exporter.lock", "requirements/build.lock"),
        ),
        # The TF Serving stand-in (tools/tfserving_double): a model server for tests and the demo.
        Spec(
            "tfserving-double",
            "tools/tfserving_double/Dockerfile",
            ("requirements/exporter.lock", "tools/tfserving_double"),
            "tf-runtime",
            ("requirements/exporter.lock",),
        ),
    )
}
# What `make images` builds: every image the product ships.
PRODUCT_IMAGES = ("operator", "exporter", "tfserving-double")
# Only ever a base for others: kept in buildah's storage, no archive (rebuilt if the storage is wiped).
INTERMEDIATE_IMAGES = ("tf-runtime",)


class ImageBuildError(RuntimeError):
    """A build step failed; the message names the step and ends with the tail of its log."""


@dataclasses.dataclass(frozen=True)
class BuiltImage:
    name: str
    ref: str  # the name to import it under, e.g. localhost/servedmodel/operator:0.1.0-0123456789ab
    archive: Path | None  # an oci-archive holding the image under `ref` (None: an intermediate image)
    key: str  # hash of every input
    digest: str  # manifest digest (sha256:...)
    size: int  # bytes of the archive (compressed layers)
    build_seconds: float  # of the build that made the archive
    cached: bool  # True when this call found it in the cache

    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data["archive"] = str(self.archive) if self.archive else None
        return data


def app_version() -> str:
    """The chart's appVersion: release image tags follow it."""
    for line in (TOP / "charts/servedmodel-operator/Chart.yaml").read_text().splitlines():
        if line.startswith("appVersion:"):
            return line.split(":", 1)[1].strip().strip("\"'")
    raise ImageBuildError("charts/servedmodel-operator/Chart.yaml has no appVersion")


def _skip(path: Path) -> bool:
    return (
        any(part == "__pycache__" or part.endswith(".egg-info") for part in path.parts)
        or path.suffix == ".pyc"
    )


def _input_files(paths: tuple[str, ...]) -> list[Path]:
    """Every file under the given repository paths (sorted, bytecode and egg-info left out)."""
    files: list[Path] = []
    for rel in paths:
        path = TOP / rel
        if not path.exists():
            raise ImageBuildError(f"input {rel} does not exist in {TOP}")
        candidates = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        files += [p for p in candidates if not _skip(p.relative_to(TOP))]
    return sorted(set(files))


def _hash_files(digest: hashlib._Hash, files: list[Path]) -> None:
    for path in files:
        digest.update(str(path.relative_to(TOP)).encode() + b"\0")
        digest.update(b"x" if os.access(path, os.X_OK) else b"-")
        digest.update(hashlib.sha256(path.read_bytes()).digest())


def spec_key(spec: Spec, base_key: str) -> str:
    """Hash of all a build reads: Dockerfile, inputs, the base image's key and this recipe."""
    digest = hashlib.sha256(f"recipe {RECIPE}\nbase {base_key}\nname {spec.name}\n".encode())
    _hash_files(digest, _input_files((spec.dockerfile,) + spec.inputs))
    return digest.hexdigest()


def base_key() -> str:
    recipe = json.dumps(
        [BASE_RECIPE, BASE_SUITE, BASE_PACKAGES, BASE_DPKG_OPTS, BASE_HOOKS, BASE_ENV, SOURCE_DATE_EPOCH]
    )
    return hashlib.sha256(recipe.encode()).hexdigest()


# --- running things -------------------------------------------------------------------------------------


def _log(message: str) -> None:
    print(f"[images] {message}", file=sys.stderr, flush=True)


def _run(cmd: list[str], log: Path, what: str, env: dict | None = None) -> str:
    """Runs cmd with its output appended to log; returns stdout. On failure: the log's tail."""
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=out, text=True, env=env)
        out.write(proc.stdout)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-25:])
        raise ImageBuildError(f"{what} failed (exit {proc.returncode}); log {log}:\n{tail}")
    return proc.stdout


def buildah(*args: str) -> list[str]:
    """The buildah command line on the project's own image storage."""
    return ["buildah", "--root", str(STORAGE), "--runroot", str(RUNROOT), *args]


def ensure_tools() -> None:
    """buildah, mmdebstrap and umoci come from Debian packages, installed on first use."""
    script = TOP / "tools/dev/system-packages.sh"
    proc = subprocess.run(["bash", str(script)])
    missing = [t for t in ("buildah", "mmdebstrap", "umoci") if shutil.which(t) is None]
    if proc.returncode != 0 or missing:
        raise ImageBuildError(
            f"image tools missing ({', '.join(missing) or 'see above'}): {script} could not install them"
        )


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """One build of a given image at a time on this machine; the others wait, then find it cached."""
    IMAGES_DIR.mkdir(parents=True, exist_ok=True)
    with open(IMAGES_DIR / f".{name}.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _log(f"waiting for another build of {name} on this machine")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _meta_path(archive: Path) -> Path:
    return archive.with_suffix(".json")


def _cached(archive: Path) -> BuiltImage | None:
    meta = _meta_path(archive)
    if not (archive.is_file() and meta.is_file()):
        return None
    data = json.loads(meta.read_text())
    data.update(archive=archive, cached=True)
    os.utime(meta)  # recently used: kept by _prune
    return BuiltImage(**data)


def _in_storage(ref: str) -> bool:
    return subprocess.run(buildah("inspect", "--type", "image", ref), capture_output=True).returncode == 0


def _restore(image: BuiltImage, log: Path) -> None:
    """Puts a cached image back into buildah's storage (needed as a base: `FROM` reads from there)."""
    if _in_storage(image.ref):
        return
    _log(f"loading {image.ref} from {image.archive}")
    pulled = _run(buildah("pull", "--quiet", f"oci-archive:{image.archive}"), log, "buildah pull")
    image_id = pulled.split()[-1]
    _run(buildah("tag", image_id, image.ref), log, "buildah tag")


def _publish(name: str, ref: str, key: str, archive: Path, started: float, log: Path) -> BuiltImage:
    """Writes the image to its oci-archive (atomically) with a JSON sidecar."""
    tmp = archive.with_name(f".{archive.name}.{os.getpid()}")
    digest_file = tmp.with_suffix(".digest")
    tmp.unlink(missing_ok=True)
    _run(
        buildah("push", "--quiet", "--digestfile", str(digest_file), ref, f"oci-archive:{tmp}:{ref}"),
        log,
        f"buildah push {ref}",
    )
    digest = digest_file.read_text().strip()
    digest_file.unlink()
    image = BuiltImage(
        name=name,
        ref=ref,
        archive=archive,
        key=key,
        digest=digest,
        size=tmp.stat().st_size,
        build_seconds=round(time.monotonic() - started, 1),
        cached=False,
    )
    os.replace(tmp, archive)
    meta = image.to_json()
    for field in ("archive", "cached"):
        meta.pop(field)
    _meta_path(archive).write_text(json.dumps(meta, indent=2) + "\n")
    return image


# --- the base image --------------------------------------------------------------------------------------


def _apt_sources() -> list[str]:
    """The machine's own Debian sources when it has them (the way it reaches the package archive)."""
    for path in (Path("/etc/apt/sources.list.d/debian.sources"), Path("/etc/apt/sources.list")):
        if path.is_file() and path.read_text().strip():
            return [str(path)]
    return []


def build_base() -> BuiltImage:
    """Debian bookworm minbase with Python 3.11 and a venv at /usr/local, imported into buildah."""
    key = base_key()
    ref = f"{REPOSITORY}/base:{BASE_SUITE}-{key[:12]}"
    archive = IMAGES_DIR / f"base-{key[:12]}.oci.tar"
    log = IMAGES_DIR / "logs" / f"base-{key[:12]}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with _locked(f"base-{key[:12]}"):
        image = _cached(archive)
        if image is None:
            image = _build_base(ref, key, archive, log)
        _restore(image, log)
    return image


def _build_base(ref: str, key: str, archive: Path, log: Path) -> BuiltImage:
    ensure_tools()
    started = time.monotonic()
    _log(f"building the Python base image {ref} from Debian packages (about a minute; log {log})")
    with tempfile.TemporaryDirectory(prefix="base-", dir=IMAGES_DIR) as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        cmd = [
            "mmdebstrap",
            "--variant=minbase",
            f"--include={','.join(BASE_PACKAGES)}",
            '--aptopt=APT::Install-Recommends "false"',
            # the machine's apt may reach a fixed snapshot of the archive whose Release has expired
            '--aptopt=Acquire::Check-Valid-Until "false"',
        ]
        cmd += [f"--dpkgopt={opt}" for opt in BASE_DPKG_OPTS]
        # merged /usr set up by mmdebstrap's own hook, not by the usrmerge package (which pulls in perl)
        cmd += ["--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr"]
        cmd += [f"--customize-hook={hook}" for hook in BASE_HOOKS]
        cmd += [BASE_SUITE, str(rootfs), *_apt_sources()]
        _run(cmd, log, "mmdebstrap", env={**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH})
        container = _run(buildah("from", "--quiet", "scratch"), log, "buildah from").strip()
        try:
            _run(buildah("add", "--quiet", container, str(rootfs), "/"), log, "buildah add")
            config = [a for k, v in BASE_ENV.items() for a in ("--env", f"{k}={v}")]
            _run(
                buildah(
                    "config",
                    *config,
                    "--cmd",
                    "python3",
                    "--label",
                    f"io.servedmodel.base-key={key}",
                    container,
                ),
                log,
                "buildah config",
            )
            _run(buildah("commit", "--quiet", "--rm", container, ref), log, "buildah commit")
        except BaseException:
            subprocess.run(buildah("rm", container), capture_output=True)
            raise
    return _publish("base", ref, key, archive, started, log)


# --- wheelhouse ------------------------------------------------------------------------------------------


def wheelhouse(locks: tuple[str, ...]) -> Path:
    """Downloads (once per lock content) the wheels a lock pins into the shared wheelhouse; hash-checked.

    Wheels for this machine's Python 3.11 on Linux x86_64 are the ones Debian bookworm's Python 3.11 uses.
    """
    WHEELS_DIR.mkdir(parents=True, exist_ok=True)
    for lock in locks:
        lock_hash = hashlib.sha256((TOP / lock).read_bytes()).hexdigest()[:16]
        marker = WHEELS_DIR / f".complete-{lock_hash}"
        if marker.exists():
            continue
        with _locked("wheels"):
            if marker.exists():
                continue
            _log(f"downloading the wheels of {lock} into {WHEELS_DIR}")
            log = IMAGES_DIR / "logs" / f"wheels-{lock_hash}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            _run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "--quiet",
                    "--disable-pip-version-check",
                    "--require-hashes",
                    "--no-deps",
                    "--only-binary=:all:",
                    "--dest",
                    str(WHEELS_DIR),
                    "-r",
                    str(TOP / lock),
                ],
                log,
                f"pip download for {lock}",
            )
            marker.touch()
    return WHEELS_DIR


# --- images from Dockerfiles -----------------------------------------------------------------------------


def _stage_context(spec: Spec, into: Path) -> None:
    """A build context holding only the spec's Dockerfile and inputs: the build can read nothing else."""
    for path in _input_files((spec.dockerfile,) + spec.inputs):
        target = into / path.relative_to(TOP)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)


def key_of(name: str) -> str:
    """The input key of an image (without building anything): its inputs and, recursively, its base's."""
    if name == "base":
        return base_key()
    if name not in SPECS:
        raise ImageBuildError(f"unknown image {name!r}; known: {', '.join(SPECS)}")
    spec = SPECS[name]
    if not (TOP / spec.dockerfile).exists():
        raise ImageBuildError(f"{name}: {spec.dockerfile} does not exist")
    return spec_key(spec, key_of(spec.base))


def ref_of(name: str, key: str) -> str:
    tag = name if name in INTERMEDIATE_IMAGES else app_version()
    return f"{REPOSITORY}/{name}:{tag}-{key[:12]}"


def build(name: str) -> BuiltImage:
    """Builds the image called name (or finds it cached) and returns its ref and oci-archive."""
    if name == "base":
        return build_base()
    key = key_of(name)
    spec, ref = SPECS[name], ref_of(name, key)
    archive = IMAGES_DIR / f"{name}-{key[:12]}.oci.tar"
    log = IMAGES_DIR / "logs" / f"{name}-{key[:12]}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with _locked(f"{name}-{key[:12]}"):
        if name in INTERMEDIATE_IMAGES:  # kept in buildah's storage only: no archive to write
            if _in_storage(ref):
                return BuiltImage(name, ref, None, key, "", 0, 0.0, cached=True)
        else:
            image = _cached(archive)
            if image is not None:
                return image
        ensure_tools()
        base = build(spec.base)
        _restore(base, log)
        wheels = wheelhouse(spec.locks)
        started = time.monotonic()
        _log(f"building {ref} from {spec.dockerfile} on {base.ref} (log {log})")
        with tempfile.TemporaryDirectory(prefix=f"context-{name}-", dir=IMAGES_DIR) as context:
            _stage_context(spec, Path(context))
            _run(
                buildah(
                    "bud",
                    "--isolation",
                    "chroot",
                    "--network",
                    "host",
                    "--pull=never",
                    "--quiet",
                    "--file",
                    str(Path(context) / spec.dockerfile),
                    "--build-arg",
                    f"BASE_IMAGE={base.ref}",
                    "--build-arg",
                    "PIP_INSTALL_ARGS=--no-index --find-links=/wheels",
                    "--volume",
                    f"{wheels}:/wheels:ro",
                    "--label",
                    f"io.servedmodel.input-key={key}",
                    "--tag",
                    ref,
                    context,
                ),
                log,
                f"buildah bud {spec.dockerfile}",
            )
        if name in INTERMEDIATE_IMAGES:
            seconds = round(time.monotonic() - started, 1)
            _log(f"built {ref} in {seconds:.0f} s")
            _remove_other_tags(name, ref)
            return BuiltImage(name, ref, None, key, "", 0, seconds, cached=False)
        image = _publish(name, ref, key, archive, started, log)
        _log(f"built {ref} in {image.build_seconds:.0f} s ({image.size / 1e6:.0f} MB archive)")
        # The archive is the product; the storage keeps only bases (their layers stay shared).
        subprocess.run(buildah("rmi", ref), capture_output=True)
        _prune(name)
        return image


def _remove_other_tags(name: str, keep: str) -> None:
    """Drops older builds of an intermediate image from the storage (gigabytes each); one still in use
    by a build elsewhere stays (buildah refuses), and a later build that needs one rebuilds it."""
    listing = subprocess.run(buildah("images", "--json"), capture_output=True, text=True)
    if listing.returncode != 0:
        return
    for entry in json.loads(listing.stdout or "[]"):
        for ref in entry.get("names") or []:
            if ref.startswith(f"{REPOSITORY}/{name}:") and ref != keep:
                subprocess.run(buildah("rmi", ref), capture_output=True)


def _prune(name: str) -> None:
    """Deletes all but the KEEP_ARCHIVES most recently used archives of an image."""
    metas = sorted(IMAGES_DIR.glob(f"{name}-*.oci.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for meta in metas[KEEP_ARCHIVES:]:
        meta.with_suffix(".tar").unlink(missing_ok=True)
        meta.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="images.py",
        description=__doc__.split("\n\n")[0],
        epilog=f"images: {', '.join(PRODUCT_IMAGES)} (default: all); cache: {IMAGES_DIR}",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="images to build (default: every one)")
    parser.add_argument("--json", action="store_true", help="print one JSON object per image")
    args = parser.parse_args(argv)
    try:
        for name in args.names or PRODUCT_IMAGES:
            started = time.monotonic()
            image = build(name)
            if args.json:
                print(json.dumps(image.to_json()))
            else:
                state = "cached" if image.cached else f"built in {image.build_seconds:.0f} s"
                print(
                    f"{name:18} {image.ref}  {image.size / 1e6:6.0f} MB  {state} "
                    f"({time.monotonic() - started:.1f} s)\n{'':18} {image.archive}"
                )
    except ImageBuildError as exc:
        print(f"images.py: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
