"""A model-server client the serving tests run inside the real node's network namespace, where ClusterIPs
and pod IPs are reachable (the host's namespace routes them nowhere). It prints one JSON document.

    netclient.py rest URL [BODY]                       one GET (no body) or POST; status and JSON answer
    netclient.py loop URL BODY --stop-file F [--started-file G] [--distinct-file D]
                      [--max-seconds S] [--max-requests N]
                                                       POSTs back to back until F exists (bounded);
                                                       G is created once the first answer came; D holds
                                                       the count of different answers met so far
    netclient.py grpc HOST:PORT MODEL INSTANCES_JSON [--version N | --label L]
                                                       PredictionService.Predict with the generated stubs
    netclient.py available STATUS_URL VERSION [--max-seconds S]
                                                       GETs the model status every 50 ms until VERSION is
                                                       AVAILABLE; the wall-clock time (time.time()) it was
                                                       first seen so
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

# Cluster addresses only: never a proxy from the environment.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def request(url: str, body: str | None, timeout: float = 10) -> tuple[int, object]:
    data = body.encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with OPENER.open(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        text = exc.read().decode(errors="replace")
        try:
            return exc.code, json.loads(text)
        except ValueError:
            return exc.code, text


def rest(args: argparse.Namespace) -> dict:
    status, answer = request(args.url, args.body)
    return {"status": status, "answer": answer}


def _write_atomically(path: str, text: str) -> None:
    with open(f"{path}.tmp", "w") as f:
        f.write(text)
    os.replace(f"{path}.tmp", path)


def _neighbours() -> str:
    """The namespace's ARP table: after a failure, which address did not answer (FAILED, INCOMPLETE)."""
    try:
        out = subprocess.run(["ip", "neigh", "show"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"(ip neigh: {exc})"
    return "; ".join(line.strip() for line in out.splitlines() if line.strip())


def loop(args: argparse.Namespace) -> dict:
    """Requests one after another; each either answers 200 with predictions or counts as failed."""
    ok = failed = 0
    errors: list[str] = []
    answers: dict[str, int] = {}
    start = time.monotonic()
    while ok + failed < args.max_requests and time.monotonic() - start < args.max_seconds:
        if os.path.exists(args.stop_file):
            break
        try:
            status, answer = request(args.url, args.body, timeout=5)
            if status == 200 and isinstance(answer, dict) and "predictions" in answer:
                ok += 1
                if ok == 1 and args.started_file:
                    open(args.started_file, "w").close()
                key = json.dumps([[round(x, 4) for x in row] for row in answer["predictions"]])
                if key not in answers and args.distinct_file:
                    _write_atomically(args.distinct_file, str(len(answers) + 1))
                answers[key] = answers.get(key, 0) + 1
                continue
            failure = f"HTTP {status}: {str(answer)[:200]}"
        except (OSError, http.client.HTTPException, ValueError) as exc:  # refused, reset, cut short
            failure = f"{exc.__class__.__name__}: {exc}"
        failed += 1
        if len(errors) < 10:  # when (also on the wall clock, to match node logs) and the ARP table then
            now = time.time()
            wall = time.strftime("%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"
            errors.append(f"{time.monotonic() - start:.2f}s ({wall}) {failure} [neighbours: {_neighbours()}]")
    return {
        "ok": ok,
        "failed": failed,
        "errors": errors,
        "answers": answers,
        "seconds": round(time.monotonic() - start, 2),
        "stopped": os.path.exists(args.stop_file),
    }


def available(args: argparse.Namespace) -> dict:
    """Ask TF Serving's status API until the version is AVAILABLE (or the time is up)."""
    start = time.monotonic()
    polls = 0
    while time.monotonic() - start < args.max_seconds:
        polls += 1
        try:
            status, answer = request(args.url, None, timeout=2)
        except OSError:
            status, answer = 0, None
        if status == 200 and isinstance(answer, dict):
            for entry in answer.get("model_version_status") or []:
                if entry.get("version") == str(args.version) and entry.get("state") == "AVAILABLE":
                    return {"available_at": time.time(), "polls": polls}
        time.sleep(0.05)
    return {"available_at": None, "polls": polls}


def grpc_predict(args: argparse.Namespace) -> dict:
    import grpc
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request_ = predict_pb2.PredictRequest()
    request_.model_spec.name = args.model
    if args.version is not None:
        request_.model_spec.version.value = args.version
    if args.label is not None:
        request_.model_spec.version_label = args.label
    instances = np.asarray(json.loads(args.instances), dtype=np.float32)
    request_.inputs[args.input].CopyFrom(tf.make_tensor_proto(instances))
    with grpc.insecure_channel(args.address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.Predict(request_, timeout=30)
    return {
        "model_spec": {"name": response.model_spec.name, "version": response.model_spec.version.value},
        "outputs": {k: tf.make_ndarray(v).tolist() for k, v in response.outputs.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("rest")
    r.add_argument("url")
    r.add_argument("body", nargs="?")
    r.set_defaults(run=rest)
    lp = sub.add_parser("loop")
    lp.add_argument("url")
    lp.add_argument("body")
    lp.add_argument("--stop-file", required=True)
    lp.add_argument("--started-file")
    lp.add_argument("--distinct-file", help="rewritten with the count of distinct answers whenever it grows")
    lp.add_argument("--max-seconds", type=float, default=300)
    lp.add_argument("--max-requests", type=int, default=100_000)
    lp.set_defaults(run=loop)
    g = sub.add_parser("grpc")
    g.add_argument("address")
    g.add_argument("model")
    g.add_argument("instances")
    g.add_argument("--input", default="features")
    g.add_argument("--version", type=int)
    g.add_argument("--label")
    g.set_defaults(run=grpc_predict)
    av = sub.add_parser("available")
    av.add_argument("url")
    av.add_argument("version", type=int)
    av.add_argument("--max-seconds", type=float, default=120)
    av.set_defaults(run=available)
    args = parser.parse_args()
    json.dump(args.run(args), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
