"""ServedModel create -> Ready on the real node: what a user waits for, with real pods.

Starts a local cluster with a real node (containerd + kubelet), imports the TF Serving stand-in image,
publishes one small Keras model with the exporter, runs the operator in the node's network (as in a pod),
then creates ServedModels one at a time (each serving that model) and times, for each, the creation to
`Ready=True` (the kubelet's probes passed and the operator asked TF Serving: the version is AVAILABLE),
then deletes it. Reports p50 / min / max of `--count` runs.

    PYTHONPATH=operator:exporter:tools/controlplane:tests:tests/e2e/serving \\
        python bench/realnode_ready_bench.py --count 10 --out ready.json      (needs root)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for extra in ("tests", "tests/e2e/serving", "tools/images", "tools/controlplane"):
    sys.path.insert(0, str(ROOT / extra))

from chartrights import chart_rules, grant_chart_rights  # noqa: E402
from kubehelpers import Kube  # noqa: E402
from localcluster import OPERATOR_USER, LocalCluster  # noqa: E402
from modelvolume import ModelVolume  # noqa: E402
from servinghelpers import servedmodel, start_operator, wait_ready  # noqa: E402

NAMESPACE = "bench"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=10, help="ServedModels created, one after another")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here too")
    args = parser.parse_args()

    import images
    import keras
    import numpy as np

    work = Path(tempfile.mkdtemp(prefix="ready-bench-"))
    volume = ModelVolume.create(prefix="ready-bench-volume-")
    model = keras.Sequential([keras.Input((4,), name="features"), keras.layers.Dense(3)])
    model.build((None, 4))
    model.set_weights([np.ones((4, 3), np.float32), np.zeros(3, np.float32)])
    model.save(work / "m.keras")
    volume.publish(work / "m.keras", "m")

    cluster = LocalCluster(workdir=work / "cluster", with_kwok=False, with_real_node=True).start()
    operator = None
    try:
        kube = Kube(cluster)
        node = cluster.real_node
        assert node is not None
        built = images.build("tfserving-double")
        started = time.monotonic()
        node.import_image(built.archive, built.ref)
        print(f"image import: {time.monotonic() - started:.1f}s", file=sys.stderr)
        kube.install_servedmodel_crd()
        rule = {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]}
        grant_chart_rights(cluster.kubectl, OPERATOR_USER, "bench", [*chart_rules(), rule])
        kube.kubectl("create", "namespace", NAMESPACE)
        kube.apply(volume.claim(NAMESPACE))
        operator = start_operator(cluster, work, NAMESPACE, node)
        seconds = []
        for i in range(args.count):
            name = f"m{i}"
            manifest = servedmodel(name, NAMESPACE, built.ref, modelName="m")
            manifest["spec"]["storage"]["path"] = "m"
            started = time.monotonic()
            kube.apply(manifest)
            wait_ready(kube, NAMESPACE, name, timeout=300)
            seconds.append(time.monotonic() - started)
            print(f"{name}: create -> Ready {seconds[-1]:.1f}s", file=sys.stderr)
            # Not waited for: the server, like TF Serving, ignores SIGTERM and goes after its 30 s grace
            # period, idle meanwhile.
            kube.kubectl("delete", "servedmodel", name, "-n", NAMESPACE, "--wait=false")
        result = {
            "what": "ServedModel create -> Ready=True on the real node (stand-in image, one small model)",
            "count": len(seconds),
            "p50_s": round(statistics.median(seconds), 2),
            "min_s": round(min(seconds), 2),
            "max_s": round(max(seconds), 2),
            "all_s": [round(s, 2) for s in seconds],
        }
        print(json.dumps(result, indent=2))
        if args.out:
            args.out.write_text(json.dumps(result, indent=2) + "\n")
    finally:
        if operator is not None:
            operator.stop()
        cluster.stop()

        volume.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
