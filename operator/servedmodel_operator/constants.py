"""Names shared by the renderer, the reconciler and the CRD: one place, so they cannot drift apart."""

GROUP = "servedmodel.io"
VERSION = "v1alpha1"
PLURAL = "servedmodels"
KIND = "ServedModel"
API_VERSION = f"{GROUP}/{VERSION}"

FIELD_MANAGER = "servedmodel-operator"
# Holds a Deployment's replicas for a moment when autoscaling is turned on, so that the operator's next apply
# (without replicas) does not remove the field before the HPA owns it (see replicas_handover.py).
HANDOVER_FIELD_MANAGER = "servedmodel-operator-handover-to-hpa"
OPERATOR_NAME = "servedmodel-operator"

# Standard labels on every child object; the selector uses only the two that never change.
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_TRACK = "servedmodel.io/track"  # stable or canary: which Deployment a model server pod belongs to
APP_NAME = "tensorflow-serving"
EXPORTER_APP_NAME = "servedmodel-exporter"  # export Job pods: never matched by APP_NAME selectors
MANAGED_BY_SELECTOR = {LABEL_MANAGED_BY: OPERATOR_NAME}

# Annotations the operator writes on its children.
ANNOTATION_SPEC_HASH = f"{GROUP}/spec-hash"  # hash of the rendered object: a changed spec changes it
ANNOTATION_RESTART_CHECKSUM = f"{GROUP}/restart-checksum"  # config read only at start-up: rolls pods

# The one TensorFlow release of the project: the TF Serving release the operator deploys by default (a
# pinned tag: a moving one would change what runs without a spec change) and the TensorFlow the exporter
# uses (pyproject.toml pins it, requirements/*.lock lock it, the exporter image installs the lock).
# tests/unit/packaging/test_tensorflow_release.py checks they agree; the README says how to change them.
TENSORFLOW_RELEASE = "2.21.0"
DEFAULT_IMAGE = f"tensorflow/serving:{TENSORFLOW_RELEASE}"

DEFAULT_EXPORTER_IMAGE = "ghcr.io/servedmodel/servedmodel-exporter:0.1.0"
EXPORTER_USER = 10001  # the exporter image's non-root user
VOLUME_MOUNT = "/volume"  # the model volume, read-write, in export Jobs

# Paths inside the model server container.
MODEL_MOUNT = "/models"
# With spec.storage.image, the image's root as the model server sees it (an image volume mounted here, or
# the modelcar's link to /proc/<pid>/root); the versions are under <root>/models/<model>/.
MODEL_IMAGE_ROOT = "/models/root"
CONFIG_MOUNT = "/etc/servedmodel"
MODEL_CONFIG_FILE = "models.config"
TF_SERVING_BINARY = "/usr/bin/tensorflow_model_server"
# The tensorflow/serving image runs as root by default; we run it as an unprivileged user.
RUN_AS_USER = 1000

# With spec.storage.s3: the sync sidecar's HTTP port (its state, readiness), in every model server pod.
SYNC_PORT = 8502
SYNC_STATE_PATH = "/v1/sync"  # servedmodel_exporter.objectstore.sync serves its state here
