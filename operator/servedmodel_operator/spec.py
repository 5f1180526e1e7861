"""The validated, defaulted view of a ServedModel's spec that the renderer works from.

The CRD schema rejects most bad input at the API server; this module re-checks what the renderer relies
on, so a spec written against an older CRD, or one the schema cannot express, becomes an `InvalidSpec`
with a clear message instead of a crash or a half-rendered object.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field, replace
from typing import Any

from .constants import DEFAULT_EXPORTER_IMAGE, DEFAULT_IMAGE, MODEL_IMAGE_ROOT, MODEL_MOUNT, SYNC_PORT

MODEL_NAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?$")
DNS_LABEL_RE = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
LABEL_RE = re.compile(r"^[A-Za-z0-9_]{1,63}$")
MANAGED_FLAGS = (
    "--port",
    "--rest_api_port",
    "--model_config_file",
    "--model_config_file_poll_wait_seconds",
    "--file_system_poll_wait_seconds",
    "--model_name",
    "--model_base_path",
)


class InvalidSpec(ValueError):
    """The spec cannot be served as written; the message tells the user what to change."""


@dataclass(frozen=True)
class VersionPolicy:
    kind: str  # "latest" | "specific" | "all"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def summary(self) -> str:
        """Short form for status and printer columns: latest:1, 3,4 or all."""
        if self.kind == "latest":
            return f"latest:{self.num_versions}"
        if self.kind == "specific":
            return ",".join(str(v) for v in self.versions)
        return "all"


@dataclass(frozen=True)
class Autoscaling:
    min_replicas: int
    max_replicas: int
    target_cpu: int
    metrics: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Batching:
    max_batch_size: int
    batch_timeout_micros: int
    num_batch_threads: int
    max_enqueued_batches: int
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False


@dataclass(frozen=True)
class Monitoring:
    prometheus: bool
    path: str
    service_monitor: bool
    interval: str


@dataclass(frozen=True)
class Canary:
    version: int
    replicas: int


@dataclass(frozen=True)
class ExportSpec:
    source_path: str  # relative to the volume root; "" when url is set
    source_url: str
    sha256: str
    version: str  # "auto" or digits
    image: str
    image_pull_policy: str
    warmup_requests: int
    keep_versions: int | None
    timeout_seconds: int
    backoff_limit: int
    resources: dict[str, Any]
    raw: dict[str, Any]  # as written: its hash names the Job, so an unchanged section never re-runs


@dataclass(frozen=True)
class ModelImage:
    """spec.storage.image: the versions come in an OCI image (``servedmodel-export image``)."""

    reference: str
    pull_policy: str = "IfNotPresent"
    pull_secrets: tuple[str, ...] = ()


@dataclass(frozen=True)
class S3Storage:
    """spec.storage.s3: the versions live in a bucket; a sync sidecar mirrors them into an emptyDir."""

    bucket: str
    prefix: str = ""  # of the model folders: objects are under <prefix>/<model>/<version>/
    model: str = ""  # the model folder's name under the prefix
    endpoint: str = ""
    region: str = "us-east-1"
    secret_name: str = ""  # "" : the SDK's own credential chain
    access_key_id_key: str = "AWS_ACCESS_KEY_ID"
    secret_access_key_key: str = "AWS_SECRET_ACCESS_KEY"
    size_limit: str = "10Gi"
    sync_interval_seconds: int = 10
    sync_image: str = DEFAULT_EXPORTER_IMAGE
    sync_image_set: bool = False  # written in the spec (syncImage or export.image), not the default

    @property
    def url(self) -> str:
        """s3://bucket/prefix, as `servedmodel-export publish --to` takes it."""
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")


@dataclass(frozen=True)
class ServedModelSpec:
    name: str
    namespace: str
    uid: str
    model_name: str
    claim_name: str
    claim_read_only: bool
    path: str
    version_policy: VersionPolicy
    version_labels: dict[str, int] = field(default_factory=dict)
    replicas: int = 1
    image: str = DEFAULT_IMAGE
    image_pull_policy: str = "IfNotPresent"
    resources: dict[str, Any] = field(default_factory=dict)
    grpc_port: int = 8500
    rest_port: int = 8501
    config_poll_seconds: int = 10
    fs_poll_seconds: int = 2
    startup_timeout_seconds: int = 600
    extra_args: tuple[str, ...] = ()
    env: tuple[dict[str, Any], ...] = ()
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, Any], ...] = ()
    affinity: dict[str, Any] = field(default_factory=dict)
    service_account_name: str = ""
    automount_token: bool = False  # the pods get the ServiceAccount's API token only when asked for
    pod_labels: dict[str, str] = field(default_factory=dict)
    pod_annotations: dict[str, str] = field(default_factory=dict)
    service_type: str = "ClusterIP"
    service_annotations: dict[str, str] = field(default_factory=dict)
    export: ExportSpec | None = None
    autoscaling: Autoscaling | None = None
    batching: Batching | None = None
    monitoring: Monitoring | None = None
    image_set: bool = False  # the user chose the image: never swap in the GPU variant
    server_version: str = ""  # the TF Serving release `image` runs, when the user declares it
    canary: Canary | None = None
    model_image: ModelImage | None = None  # storage.image; then claim_name is ""
    s3: S3Storage | None = None  # storage.s3; then claim_name is ""

    @property
    def gpus(self) -> bool:
        """The container asks for NVIDIA GPUs (limits or requests)."""
        for part in ("limits", "requests"):
            value = (self.resources.get(part) or {}).get("nvidia.com/gpu")
            if value not in (None, 0, "0"):
                return True
        return False

    def stable_view(self) -> ServedModelSpec:
        """The stable track while a canary runs: without labels that name a version only the canary serves."""
        assert self.canary is not None
        policy = self.version_policy
        only_canary = policy.kind == "specific" and self.canary.version not in policy.versions
        labels = {
            k: v for k, v in self.version_labels.items() if not (only_canary and v == self.canary.version)
        }
        return replace(self, version_labels=labels)

    def canary_view(self) -> ServedModelSpec:
        """The canary as a spec of its own: only the candidate version, the labels that name it, fixed
        replicas. The renderer renders it like the stable track, under other names."""
        assert self.canary is not None
        v = self.canary.version
        return replace(
            self,
            version_policy=VersionPolicy("specific", versions=(v,)),
            version_labels={k: n for k, n in self.version_labels.items() if n == v},
            replicas=self.canary.replicas,
            autoscaling=None,
            canary=None,
        )

    @property
    def min_replicas(self) -> int:
        """Replicas the model server keeps at the least: what a disruption budget can protect."""
        return self.autoscaling.min_replicas if self.autoscaling else self.replicas

    @property
    def base_path(self) -> str:
        """Absolute model base path inside the model server container."""
        if self.model_image is not None:  # the image's /models/<path or model name>, wherever it is mounted
            return posixpath.join(MODEL_IMAGE_ROOT, "models", self.path or self.model_name)
        if self.s3 is not None:  # the sidecar's emptyDir, holding <model>/<version>/ like the bucket
            return posixpath.join(MODEL_MOUNT, self.s3.model)
        return posixpath.join(MODEL_MOUNT, self.path) if self.path else MODEL_MOUNT


def _int(value: Any, what: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidSpec(f"{what} must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise InvalidSpec(f"{what} must be between {lo} and {hi}, got {value}")
    return value


def _bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidSpec(f"{what} must be true or false, got {value!r}")
    return value


def _policy(raw: dict[str, Any] | None) -> VersionPolicy:
    raw = raw or {"latest": {"numVersions": 1}}
    chosen = [k for k in ("latest", "specific", "all") if k in raw]
    if len(chosen) != 1:
        raise InvalidSpec("versionPolicy must set exactly one of latest, specific or all")
    kind = chosen[0]
    if kind == "latest":
        n = _int((raw["latest"] or {}).get("numVersions", 1), "versionPolicy.latest.numVersions", 1, 100)
        return VersionPolicy("latest", num_versions=n)
    if kind == "specific":
        versions = (raw["specific"] or {}).get("versions") or []
        if not versions:
            raise InvalidSpec("versionPolicy.specific.versions must list at least one version")
        checked = sorted({_int(v, "versionPolicy.specific.versions[]", 1, 2**63 - 1) for v in versions})
        return VersionPolicy("specific", versions=tuple(checked))
    return VersionPolicy("all")


def _relative_path(path: str) -> str:
    if path.startswith("/"):
        raise InvalidSpec("storage.path is relative to the volume root and must not start with '/'")
    if ".." in path.split("/"):
        raise InvalidSpec("storage.path must not contain '..'")
    return posixpath.normpath(path) if path else ""


def _canary(raw: dict[str, Any] | None) -> Canary | None:
    if not raw:
        return None
    if "version" not in raw:
        raise InvalidSpec("canary.version is required: the version the canary pods serve")
    return Canary(
        version=_int(raw["version"], "canary.version", 1, 2**63 - 1),
        replicas=_int(raw.get("replicas", 1), "canary.replicas", 1, 100),
    )


def _autoscaling(raw: dict[str, Any] | None) -> Autoscaling | None:
    if not raw:
        return None
    lo = _int(raw.get("minReplicas", 1), "autoscaling.minReplicas", 1, 1000)
    hi = _int(raw.get("maxReplicas", lo), "autoscaling.maxReplicas", 1, 1000)
    if hi < lo:
        raise InvalidSpec("autoscaling.maxReplicas must be at least autoscaling.minReplicas")
    target = _int(
        raw.get("targetCPUUtilizationPercentage", 80), "autoscaling.targetCPUUtilizationPercentage", 1, 100
    )
    return Autoscaling(lo, hi, target, tuple(raw.get("metrics") or ()))


def _batching(raw: dict[str, Any] | None) -> Batching | None:
    if raw is None:
        return None
    max_batch = _int(raw.get("maxBatchSize", 32), "batching.maxBatchSize", 1, 100000)
    allowed = tuple(
        _int(v, "batching.allowedBatchSizes[]", 1, 100000) for v in raw.get("allowedBatchSizes") or ()
    )
    if allowed and (list(allowed) != sorted(set(allowed)) or allowed[-1] != max_batch):
        raise InvalidSpec("batching.allowedBatchSizes must increase and end with batching.maxBatchSize")
    return Batching(
        max_batch_size=max_batch,
        batch_timeout_micros=_int(
            raw.get("batchTimeoutMicros", 1000), "batching.batchTimeoutMicros", 0, 10**7
        ),
        num_batch_threads=_int(raw.get("numBatchThreads", 4), "batching.numBatchThreads", 1, 1024),
        max_enqueued_batches=_int(
            raw.get("maxEnqueuedBatches", 100), "batching.maxEnqueuedBatches", 1, 10**6
        ),
        allowed_batch_sizes=allowed,
        pad_variable_length_inputs=bool(raw.get("padVariableLengthInputs", False)),
    )


def _monitoring(raw: dict[str, Any] | None) -> Monitoring | None:
    if raw is None:
        return None
    prom = raw.get("prometheus") or {}
    monitor = raw.get("serviceMonitor") or {}
    path = prom.get("path") or "/monitoring/prometheus/metrics"
    if not re.fullmatch(r"/[A-Za-z0-9/_.-]*", path):
        raise InvalidSpec(f"monitoring.prometheus.path {path!r} must be an absolute URL path")
    return Monitoring(
        prometheus=bool(prom.get("enabled", True)),
        path=path,
        service_monitor=bool(monitor.get("enabled", True)),
        interval=monitor.get("interval") or "30s",
    )


def _export(raw: dict[str, Any] | None) -> ExportSpec | None:
    if not raw:
        return None
    source = raw.get("source") or {}
    path, url = source.get("path") or "", source.get("url") or ""
    if bool(path) == bool(url):
        raise InvalidSpec("export.source must set exactly one of path or url")
    if path and (path.startswith("/") or ".." in path.split("/")):
        raise InvalidSpec("export.source.path is relative to the volume root and must not contain '..'")
    if url and not re.match(r"^https?://", url):
        raise InvalidSpec("export.source.url must be an http(s) URL")
    version = str(raw.get("version") or "auto")
    if version != "auto" and not re.fullmatch(r"[1-9][0-9]{0,17}", version):
        raise InvalidSpec(f"export.version must be 'auto' or a version number, got {version!r}")
    keep = raw.get("keepVersions")
    return ExportSpec(
        source_path=posixpath.normpath(path) if path else "",
        source_url=url,
        sha256=source.get("sha256") or "",
        version=version,
        image=raw.get("image") or DEFAULT_EXPORTER_IMAGE,
        image_pull_policy=raw.get("imagePullPolicy") or "IfNotPresent",
        warmup_requests=_int(raw.get("warmupRequests", 0), "export.warmupRequests", 0, 1000),
        keep_versions=None if keep is None else _int(keep, "export.keepVersions", 1, 1000),
        timeout_seconds=_int(raw.get("timeoutSeconds", 3600), "export.timeoutSeconds", 60, 86400),
        backoff_limit=_int(raw.get("backoffLimit", 1), "export.backoffLimit", 0, 6),
        resources=dict(raw.get("resources") or {}),
        raw=raw,
    )


STORAGE_SOURCES = ("persistentVolumeClaim", "s3", "image")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")


def _model_image(raw: dict[str, Any] | None) -> ModelImage | None:
    if raw is None:
        return None
    reference = raw.get("reference") or ""
    if not reference or any(c.isspace() for c in reference):
        raise InvalidSpec("storage.image.reference must be an image reference such as registry/models/iris:3")
    policy = raw.get("pullPolicy") or "IfNotPresent"
    if policy not in PULL_POLICIES:
        raise InvalidSpec(
            f"storage.image.pullPolicy must be one of {', '.join(PULL_POLICIES)}, got {policy!r}"
        )
    secrets = []
    for entry in raw.get("pullSecrets") or ():
        name = (entry or {}).get("name") if isinstance(entry, dict) else None
        if not name:
            raise InvalidSpec("storage.image.pullSecrets entries must name a Secret: {name: <secret>}")
        secrets.append(name)
    return ModelImage(reference, policy, tuple(secrets))


BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
QUANTITY_RE = re.compile(r"^\+?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[kMGTPE])?$")


def _s3(raw: dict[str, Any] | None, path: str, model_name: str, export_image: str) -> S3Storage | None:
    if raw is None:
        return None
    bucket = raw.get("bucket") or ""
    if not BUCKET_RE.match(bucket):
        raise InvalidSpec(
            f"storage.s3.bucket {bucket!r} is not a bucket name (3-63 lowercase letters, digits, '.', '-')"
        )
    prefix = str(raw.get("prefix") or "").rstrip("/")
    if prefix.startswith("/") or ".." in prefix.split("/"):
        raise InvalidSpec(
            "storage.s3.prefix is relative to the bucket and must not start with '/' or contain '..'"
        )
    endpoint = raw.get("endpoint") or ""
    if endpoint and not re.match(r"^https?://[^\s/]+(/.*)?$", endpoint):
        raise InvalidSpec(f"storage.s3.endpoint {endpoint!r} must be an http(s) URL")
    size_limit = str(raw.get("sizeLimit", "10Gi"))
    if not QUANTITY_RE.match(size_limit):
        raise InvalidSpec(f"storage.s3.sizeLimit {size_limit!r} must be a quantity such as 10Gi")
    creds = raw.get("credentials")
    if creds is not None and not (creds or {}).get("secretName"):
        raise InvalidSpec("storage.s3.credentials.secretName is required: the Secret holding the access key")
    creds = creds or {}
    # storage.path names the model folder, possibly under sub-folders of the prefix
    folder = path or model_name
    parent, model = posixpath.split(folder)
    return S3Storage(
        bucket=bucket,
        prefix=posixpath.join(prefix, parent).strip("/") if parent else prefix,
        model=model,
        endpoint=endpoint,
        region=raw.get("region") or "us-east-1",
        secret_name=creds.get("secretName", ""),
        access_key_id_key=creds.get("accessKeyIdKey") or "AWS_ACCESS_KEY_ID",
        secret_access_key_key=creds.get("secretAccessKeyKey") or "AWS_SECRET_ACCESS_KEY",
        size_limit=size_limit,
        sync_interval_seconds=_int(
            raw.get("syncIntervalSeconds", 10), "storage.s3.syncIntervalSeconds", 1, 3600
        ),
        sync_image=raw.get("syncImage") or export_image or DEFAULT_EXPORTER_IMAGE,
        sync_image_set=bool(raw.get("syncImage") or export_image),
    )


def _server_version(raw: Any) -> str:
    if raw in (None, ""):
        return ""
    if not isinstance(raw, str) or not re.fullmatch(r"[0-9]+\.[0-9]+(\.[0-9]+)?", raw):
        raise InvalidSpec(f"serverVersion must be a TensorFlow Serving release such as 2.18.0, got {raw!r}")
    return raw


def parse(body: dict[str, Any]) -> ServedModelSpec:
    """Build the spec view from a ServedModel object; raises InvalidSpec with a user-facing message."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    if not DNS_LABEL_RE.match(meta.get("name", "")):
        raise InvalidSpec(
            "the ServedModel's name names its Service, so it must be a DNS label "
            "(at most 63 lowercase letters, digits and '-', starting with a letter)"
        )
    model_name = spec.get("modelName") or meta.get("name", "")
    if not MODEL_NAME_RE.match(model_name) or len(model_name) > 128:
        raise InvalidSpec(f"modelName {model_name!r} must be letters, digits, '.', '_' or '-' (at most 128)")

    storage = spec.get("storage") or {}
    sources = [k for k in STORAGE_SOURCES if storage.get(k) is not None]
    if len(sources) != 1:
        raise InvalidSpec(
            "storage must set exactly one source: persistentVolumeClaim, s3 or image"
            + (f" (it sets {' and '.join(sources)})" if sources else "")
        )
    pvc = storage.get("persistentVolumeClaim") or {}
    model_image = _model_image(storage.get("image"))
    path = _relative_path(storage.get("path") or "")
    export_image = (spec.get("export") or {}).get("image") or ""
    s3 = _s3(storage.get("s3"), path, model_name, export_image)
    if model_image is None and s3 is None and not pvc.get("claimName"):
        raise InvalidSpec("storage.persistentVolumeClaim.claimName is required")
    if s3 is not None and ((spec.get("export") or {}).get("source") or {}).get("path"):
        raise InvalidSpec(
            "with storage.s3 there is no model volume to read export.source.path from: use export.source.url"
        )
    if model_image is not None and spec.get("export"):
        raise InvalidSpec(
            "spec.export publishes onto a volume, and storage.image has none: publish with "
            "'servedmodel-export publish --image' and set storage.image.reference to the new image"
        )

    policy = _policy(spec.get("versionPolicy"))
    labels = {str(k): int(v) for k, v in (spec.get("versionLabels") or {}).items()}
    for label, version in labels.items():
        if not LABEL_RE.match(label):
            raise InvalidSpec(
                f"version label {label!r} may contain only letters, digits and '_' (at most 63)"
            )
        canary_version = (spec.get("canary") or {}).get("version")
        if policy.kind == "specific" and version not in policy.versions and version != canary_version:
            raise InvalidSpec(
                f"versionLabels.{label} points at version {version}, "
                "which versionPolicy.specific does not serve"
            )

    ports = spec.get("ports") or {}
    grpc = _int(ports.get("grpc", 8500), "ports.grpc", 1, 65535)
    rest = _int(ports.get("rest", 8501), "ports.rest", 1, 65535)
    if grpc == rest:
        raise InvalidSpec(
            "ports.grpc and ports.rest must differ (TF Serving silently disables REST when equal)"
        )
    if s3 is not None and SYNC_PORT in (grpc, rest):
        raise InvalidSpec(
            f"with storage.s3, port {SYNC_PORT} is the sync sidecar's: "
            "ports.grpc and ports.rest must use others"
        )

    server = spec.get("server") or {}
    extra_args = tuple(server.get("extraArgs") or ())
    for arg in extra_args:
        if not arg.startswith("--"):
            raise InvalidSpec(f"server.extraArgs entry {arg!r} must be a flag starting with '--'")
        if arg.split("=", 1)[0] in MANAGED_FLAGS:
            raise InvalidSpec(
                f"server.extraArgs must not set {arg.split('=', 1)[0]}: the operator manages it"
            )

    pod_labels = dict(spec.get("podLabels") or {})
    if any(k.startswith("app.kubernetes.io/") for k in pod_labels):
        raise InvalidSpec("podLabels must not set app.kubernetes.io/* labels; the operator owns them")

    service = spec.get("service") or {}
    return ServedModelSpec(
        name=meta["name"],
        namespace=meta.get("namespace", "default"),
        uid=meta.get("uid", ""),
        model_name=model_name,
        claim_name=pvc.get("claimName", ""),
        claim_read_only=bool(pvc.get("readOnly", True)),
        path=path,
        version_policy=policy,
        version_labels=labels,
        replicas=_int(spec.get("replicas", 1), "replicas", 0, 1000),
        image=spec.get("image") or DEFAULT_IMAGE,
        image_pull_policy=spec.get("imagePullPolicy") or "IfNotPresent",
        resources={k: dict(v) for k, v in (spec.get("resources") or {}).items() if v},
        grpc_port=grpc,
        rest_port=rest,
        config_poll_seconds=_int(
            server.get("modelConfigPollSeconds", 10), "server.modelConfigPollSeconds", 1, 3600
        ),
        fs_poll_seconds=_int(server.get("fileSystemPollSeconds", 2), "server.fileSystemPollSeconds", 1, 3600),
        startup_timeout_seconds=_int(
            server.get("startupTimeoutSeconds", 600), "server.startupTimeoutSeconds", 30, 86400
        ),
        extra_args=extra_args,
        env=tuple(spec.get("env") or ()),
        node_selector=dict(spec.get("nodeSelector") or {}),
        tolerations=tuple(spec.get("tolerations") or ()),
        affinity=dict(spec.get("affinity") or {}),
        service_account_name=spec.get("serviceAccountName") or "",
        automount_token=_bool(
            spec.get("automountServiceAccountToken", False), "automountServiceAccountToken"
        ),
        pod_labels=pod_labels,
        pod_annotations=dict(spec.get("podAnnotations") or {}),
        service_type=service.get("type") or "ClusterIP",
        service_annotations=dict(service.get("annotations") or {}),
        export=_export(spec.get("export")),
        autoscaling=_autoscaling(spec.get("autoscaling")),
        batching=_batching(spec.get("batching")),
        monitoring=_monitoring(spec.get("monitoring")),
        image_set=bool(spec.get("image")),
        server_version=_server_version(spec.get("serverVersion")),
        canary=_canary(spec.get("canary")),
        model_image=model_image,
        s3=s3,
    )
