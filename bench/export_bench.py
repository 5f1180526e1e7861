"""Cost of a verified, atomic publish relative to a bare Keras export of the same model.

For each model the two paths run alternately ``--repeats`` times in one process (so both see the same
machine load and warm caches): ``bare`` is ``model.export(path, format="tf_saved_model")`` of the in-memory
model; ``publish`` is the exporter's full path from the ``.keras`` file (load, export into staging, load the
SavedModel back, parity check, signature summary, manifest, fsync, rename). Reported: the ratio of medians,
of wall-clock time and of this process's CPU time (all threads), which a machine shared with other work
disturbs much less.

    PYTHONPATH=exporter python bench/export_bench.py --out bench-results.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402
from servedmodel_exporter.pipeline import PublishRequest, publish  # noqa: E402


def build_small() -> keras.Model:
    return keras.Sequential(
        [keras.Input((16,), name="x"), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(4)]
    )


def build_medium() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((512,), name="x"),
            keras.layers.Dense(2048, activation="relu"),
            keras.layers.Dense(1024, activation="relu"),
            keras.layers.Dense(10),
        ]
    )


MODELS = {"small": build_small, "medium": build_medium}


def bench_model(name: str, model: keras.Model, workdir: Path, repeats: int) -> dict[str, object]:
    keras_path = workdir / f"{name}.keras"
    model.save(keras_path)
    bare, full, bare_cpu, full_cpu = [], [], [], []
    for i in range(repeats):
        started, cpu = time.perf_counter(), time.process_time()
        model.export(str(workdir / f"bare-{name}-{i}"), format="tf_saved_model", verbose=False)
        bare.append(time.perf_counter() - started)
        bare_cpu.append(time.process_time() - cpu)
        started, cpu = time.perf_counter(), time.process_time()
        # A model folder of its own each time: publishing the same source into one folder again is
        # idempotent (reported, not redone), which is not what is measured here.
        result = publish(
            PublishRequest(source=str(keras_path), base_path=workdir / "models", model=f"{name}{i}")
        )
        full.append(time.perf_counter() - started)
        full_cpu.append(time.process_time() - cpu)
        assert not result.already_published
    return {
        "model": name,
        "params": model.count_params(),
        "keras_file_mb": round(keras_path.stat().st_size / 1e6, 2),
        "repeats": repeats,
        "bare_export_s": bare,
        "verified_publish_s": full,
        "bare_median_s": statistics.median(bare),
        "publish_median_s": statistics.median(full),
        "ratio": statistics.median(full) / statistics.median(bare),
        "bare_cpu_s": bare_cpu,
        "verified_publish_cpu_s": full_cpu,
        "cpu_ratio": statistics.median(full_cpu) / statistics.median(bare_cpu),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON results")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    with tempfile.TemporaryDirectory(prefix="export-bench-") as tmp:
        rows = [bench_model(name, build(), Path(tmp), args.repeats) for name, build in MODELS.items()]
    machine = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }
    args.out.write_text(json.dumps({"machine": machine, "results": rows}, indent=2) + "\n")

    print(
        f"{'model':<8} {'params':>10} {'bare export (s)':>16} {'verified publish (s)':>21} {'ratio':>6} "
        f"{'CPU ratio':>9}"
    )
    for row in rows:
        print(
            f"{row['model']:<8} {row['params']:>10,} {row['bare_median_s']:>16.3f} "
            f"{row['publish_median_s']:>21.3f} {row['ratio']:>6.2f} {row['cpu_ratio']:>9.2f}"
        )
    print(
        f"medians of {args.repeats} runs; {machine['cpus']} CPUs; TF {machine['tensorflow']}", file=sys.stderr
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
