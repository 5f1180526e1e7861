"""`servedmodel-export publish --to s3://...` (and list, inspect, gc) against a real S3-compatible server
(SeaweedFS, the `object_store` fixture): objects under <prefix>/<model>/<N>/, the commit marker last,
claims that keep concurrent publishers apart, a killed upload never committed, and clear errors."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from servedmodel_exporter import pipeline_s3
from servedmodel_exporter.checkpoints import PAUSE_MARKER, PAUSE_MODE_ENV, UPLOADING, VERIFIED, VERSION_CHOSEN
from servedmodel_exporter.cli import main
from servedmodel_exporter.errors import EXIT_OK, EXIT_PUBLISH, EXIT_USAGE, EXIT_VERSION_EXISTS

pytestmark = pytest.mark.slow


@pytest.fixture
def s3_env(object_store, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The store's endpoint and admin credentials in the standard AWS variables (in-process and for
    subprocesses), with no AWS config file in the way."""
    env = {**object_store.env(), "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def _keys(s3, bucket: str, prefix: str = "") -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


def _read(s3, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def _finish(process) -> tuple[int, dict, str]:  # noqa: ANN001
    try:
        out, err = process.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"the exporter did not finish in 300 s:\n{err}")
    return process.returncode, (json.loads(out) if out.strip() else {}), err


def _wait_paused(process, stage: str, stopped: bool = False) -> None:  # noqa: ANN001
    """Until the exporter reports the stage; with ``stopped`` (pause mode "stop") also until it has really
    stopped itself, so a SIGCONT sent next cannot arrive before its SIGSTOP."""
    seen = []
    for line in process.stderr:
        if line.strip() == f"{PAUSE_MARKER} {stage}":
            break
        seen.append(line)
    else:
        pytest.fail(f"exporter exited with {process.wait()} before reaching {stage}:\n{''.join(seen)}")
    deadline = time.monotonic() + 30
    while stopped and Path(f"/proc/{process.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "T":
        assert time.monotonic() < deadline, f"the exporter did not stop itself at {stage}"
        time.sleep(0.01)


def test_publish_writes_objects_then_a_marker_that_lists_them(
    object_store, bucket: str, s3_env: dict, variants: list[Path], run_cli: Callable
) -> None:
    url = f"s3://{bucket}/prod/models"
    code, result, err = run_cli("publish", variants[0], "--to", url, "--model", "iris")
    assert code == EXIT_OK, err
    assert result["version"] == 1 and result["already_published"] is False
    assert result["path"] == f"s3://{bucket}/prod/models/iris/1/"
    # Progress on stderr: the claim and every uploaded file.
    assert "claimed version 1 of iris" in err
    assert "[1/" in err and "saved_model.pb" in err

    s3 = object_store.client()
    keys = _keys(s3, bucket, "prod/models/iris/")
    assert "prod/models/iris/1.commit.json" in keys
    assert "prod/models/iris/.claims/1" in keys
    assert "prod/models/iris/1/saved_model.pb" in keys
    assert "prod/models/iris/1/variables/variables.index" in keys
    assert "prod/models/iris/1/assets.extra/servedmodel-manifest.json" in keys

    marker = json.loads(_read(s3, bucket, "prod/models/iris/1.commit.json"))
    assert marker["model"] == "iris" and marker["version"] == 1
    listed = {o["path"]: o for o in marker["objects"]}
    # Exactly the version's objects, each with the size and sha256 of what the store holds.
    assert {f"prod/models/iris/1/{p}" for p in listed} == {
        k for k in keys if k.startswith("prod/models/iris/1/")
    }
    for path, entry in listed.items():
        body = _read(s3, bucket, f"prod/models/iris/1/{path}")
        assert entry["size"] == len(body)
        assert entry["sha256"] == hashlib.sha256(body).hexdigest()
    manifest = json.loads(_read(s3, bucket, "prod/models/iris/1/assets.extra/servedmodel-manifest.json"))
    assert marker["manifest"] == manifest
    assert manifest["source"]["sha256"] == hashlib.sha256(variants[0].read_bytes()).hexdigest()


def test_republish_next_version_immutability_and_retention(
    object_store, bucket: str, s3_env: dict, variants: list[Path], run_cli: Callable
) -> None:
    url = f"s3://{bucket}"
    assert run_cli("publish", variants[0], "--to", url, "--model", "m")[1]["version"] == 1
    code, again, _ = run_cli("publish", variants[0], "--to", url, "--model", "m")
    assert code == EXIT_OK and again["version"] == 1 and again["already_published"] is True
    assert run_cli("publish", variants[1], "--to", url, "--model", "m")[1]["version"] == 2

    code, refused, _ = run_cli("publish", variants[2], "--to", url, "--model", "m", "--version", "2")
    assert code == EXIT_VERSION_EXISTS, refused
    assert "already exists" in refused["error"]["message"]

    code, third, _ = run_cli("publish", variants[2], "--to", url, "--model", "m", "--keep", "2", "--pin", "1")
    assert code == EXIT_OK and third["version"] == 3 and third["removed_versions"] == []
    code, fourth, _ = run_cli("publish", variants[3], "--to", url, "--model", "m", "--keep", "1")
    assert code == EXIT_OK and fourth["version"] == 4 and fourth["removed_versions"] == [1, 2, 3]
    keys = _keys(object_store.client(), bucket, "m/")
    assert not [k for k in keys if k.startswith(("m/1", "m/2", "m/3"))], keys
    assert "m/4.commit.json" in keys

    code, listed, _ = run_cli("list", "--base-path", url, "--model", "m")
    assert code == EXIT_OK
    assert [v["version"] for v in listed["versions"]] == [4] and listed["incomplete"] == []
    assert listed["versions"][0]["signatures"]["serving_default"]

    code, inspected, _ = run_cli("inspect", f"{url}/m/4")
    assert code == EXIT_OK
    entry = inspected["versions"][0]
    assert entry["version"] == 4 and entry["path"] == f"s3://{bucket}/m/4/"
    assert entry["manifest"]["source"]["sha256"] == hashlib.sha256(variants[3].read_bytes()).hexdigest()
    code, missing, _ = run_cli("inspect", f"{url}/m/9")
    assert code == EXIT_USAGE and "no commit marker" in missing["error"]["message"]


def test_killed_upload_is_never_committed_and_gc_removes_it(
    object_store, bucket: str, s3_env: dict, variants: list[Path], start_cli: Callable, run_cli: Callable
) -> None:
    url = f"s3://{bucket}/p"
    process = start_cli(
        "publish", variants[0], "--to", url, "--model", "m", "--json", pause_at=UPLOADING, env=s3_env
    )
    _wait_paused(process, UPLOADING)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL

    s3 = object_store.client()
    keys = _keys(s3, bucket, "p/m/")
    assert [k for k in keys if k.startswith("p/m/1/")], "the first object was uploaded before the kill"
    assert "p/m/1.commit.json" not in keys
    code, listed, _ = run_cli("list", "--to", url, "--model", "m")
    assert code == EXIT_OK and listed["versions"] == [] and listed["incomplete"] == [1]

    # The next publish does not reuse the interrupted number; gc removes only the uncommitted version.
    code, result, _ = run_cli("publish", variants[1], "--to", url, "--model", "m")
    assert code == EXIT_OK and result["version"] == 2
    code, young, _ = run_cli("gc", "--to", url, "--model", "m")
    assert code == EXIT_OK and young["removed"] == []  # younger than the default hour: maybe live
    code, collected, _ = run_cli("gc", "--to", url, "--model", "m", "--older-than", "0")
    assert code == EXIT_OK and collected["removed"] == [1]
    keys = _keys(s3, bucket, "p/m/")
    assert not [k for k in keys if k.startswith(("p/m/1", "p/m/.claims/1"))], keys
    assert "p/m/2.commit.json" in keys and "p/m/2/saved_model.pb" in keys


def test_an_explicit_version_held_by_a_killed_twin_is_waited_for_then_taken_over(
    object_store,
    bucket: str,
    s3_env: dict,
    variants: list[Path],
    start_cli: Callable,
    run_cli: Callable,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Job's pod killed mid-upload of --version 5; its retry (the same source) must not fail for good."""
    url = f"s3://{bucket}"
    args = ("--to", url, "--model", "m", "--version", "5")
    process = start_cli("publish", variants[0], *args, "--json", pause_at=UPLOADING, env=s3_env)
    _wait_paused(process, UPLOADING)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL

    # Fresh leftovers may be a live upload: the retry waits for its commit, then fails retryably (6).
    monkeypatch.setattr(pipeline_s3, "TWIN_WAIT_SECONDS", 2)
    code, waited, _ = run_cli("publish", variants[0], *args)
    assert code == EXIT_PUBLISH, waited
    assert "did not finish within 2 s; retry later" in waited["error"]["message"]
    # Another source is refused for good (5): the number is taken.
    code, other, _ = run_cli("publish", variants[1], *args)
    assert code == EXIT_VERSION_EXISTS and "is being published" in other["error"]["message"]

    # Once the leftovers are stale (as for gc), the retry removes them and publishes version 5 itself.
    monkeypatch.setattr(pipeline_s3, "TWIN_STALE_AFTER", dt.timedelta(0))
    code, result, err = run_cli("publish", variants[0], *args)
    assert code == EXIT_OK, result
    assert result["version"] == 5 and result["already_published"] is False
    assert "removing what it left and publishing it again" in err
    s3 = object_store.client()
    marker = json.loads(_read(s3, bucket, "m/5.commit.json"))
    stored = {k[len("m/5/") :]: _read(s3, bucket, k) for k in _keys(s3, bucket, "m/5/")}
    assert {o["path"]: (o["size"], o["sha256"]) for o in marker["objects"]} == {
        path: (len(body), hashlib.sha256(body).hexdigest()) for path, body in stored.items()
    }


def test_terminated_upload_removes_its_objects_and_claim(
    object_store, bucket: str, s3_env: dict, variants: list[Path], start_cli: Callable
) -> None:
    """SIGTERM (a deleted Job's pod) mid-upload: the run removes what it wrote and frees the number."""
    process = start_cli(
        "publish",
        variants[0],
        "--to",
        f"s3://{bucket}",
        "--model",
        "m",
        "--json",
        pause_at=UPLOADING,
        env=s3_env,
    )
    _wait_paused(process, UPLOADING)
    assert _keys(object_store.client(), bucket, "m/1/"), "the first object was uploaded before the signal"
    process.send_signal(signal.SIGTERM)
    code, _, err = _finish(process)
    assert code == 128 + signal.SIGTERM, err
    assert "terminated (SIGTERM)" in err and "removed the partial upload of version 1" in err
    assert _keys(object_store.client(), bucket) == []


def test_concurrent_auto_publishers_race_for_one_number_and_get_two(
    object_store, bucket: str, s3_env: dict, variants: list[Path], start_cli: Callable
) -> None:
    """Both pick number 1 before either claims it; the second claim is refused (412) and takes 2."""
    url = f"s3://{bucket}"
    env = {**s3_env, PAUSE_MODE_ENV: "stop"}
    first = start_cli(
        "publish", variants[0], "--to", url, "--model", "m", "--json", pause_at=VERSION_CHOSEN, env=env
    )
    _wait_paused(first, VERSION_CHOSEN, stopped=True)
    second = start_cli(
        "publish", variants[1], "--to", url, "--model", "m", "--json", pause_at=VERSION_CHOSEN, env=env
    )
    _wait_paused(second, VERSION_CHOSEN, stopped=True)
    first.send_signal(signal.SIGCONT)
    code1, result1, err1 = _finish(first)
    second.send_signal(signal.SIGCONT)
    code2, result2, err2 = _finish(second)
    assert (code1, code2) == (EXIT_OK, EXIT_OK), (err1, err2)
    assert (result1["version"], result2["version"]) == (1, 2)
    assert "version 1 was just taken by another publisher" in err2
    keys = _keys(object_store.client(), bucket)
    assert {"m/1.commit.json", "m/2.commit.json"} <= set(keys)
    marker2 = json.loads(_read(object_store.client(), bucket, "m/2.commit.json"))
    assert marker2["manifest"]["source"]["sha256"] == hashlib.sha256(variants[1].read_bytes()).hexdigest()


def test_concurrent_publishers_of_one_explicit_version_one_wins(
    object_store, bucket: str, s3_env: dict, variants: list[Path], start_cli: Callable
) -> None:
    """Both passed every check before either claimed version 7: exactly one publishes it."""
    url = f"s3://{bucket}"
    env = {**s3_env, PAUSE_MODE_ENV: "stop"}
    args = ("--to", url, "--model", "m", "--version", "7", "--json")
    processes = []
    for source in variants[:2]:
        processes.append(start_cli("publish", source, *args, pause_at=VERIFIED, env=env))
        _wait_paused(processes[-1], VERIFIED, stopped=True)
    for process in processes:
        process.send_signal(signal.SIGCONT)
    results = [_finish(p) for p in processes]
    assert sorted(code for code, _, _ in results) == [EXIT_OK, EXIT_VERSION_EXISTS], results
    winner = next(r for code, r, _ in results if code == EXIT_OK)
    loser = next(r for code, r, _ in results if code != EXIT_OK)
    assert winner["version"] == 7
    assert "already exists or is being published" in loser["error"]["message"]
    keys = _keys(object_store.client(), bucket)
    assert [k for k in keys if k.endswith(".commit.json")] == ["m/7.commit.json"]


def test_clear_errors_for_bucket_credentials_and_endpoint(
    object_store,
    bucket: str,
    s3_env: dict,
    variants: list[Path],
    run_cli: Callable,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    code, missing, _ = run_cli("publish", variants[0], "--to", "s3://no-such-bucket-here", "--model", "m")
    assert code == EXIT_USAGE
    assert "bucket 'no-such-bucket-here' does not exist" in missing["error"]["message"]

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    code, rejected, _ = run_cli("publish", variants[0], "--to", f"s3://{bucket}", "--model", "m")
    assert code == EXIT_USAGE
    message = rejected["error"]["message"]
    assert (
        "credentials were rejected (SignatureDoesNotMatch" in message and "AWS_SECRET_ACCESS_KEY" in message
    )

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "no-such-key")
    code, unknown, _ = run_cli("list", "--base-path", f"s3://{bucket}", "--model", "m")
    assert (
        code == EXIT_USAGE and "credentials were rejected (InvalidAccessKeyId" in unknown["error"]["message"]
    )

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", object_store.read_only_credentials[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", object_store.read_only_credentials[1])
    code, denied, _ = run_cli("publish", variants[0], "--to", f"s3://{bucket}", "--model", "m")
    assert code == EXIT_USAGE and "access denied (AccessDenied" in denied["error"]["message"]
    assert "s3:PutObject" in denied["error"]["message"]

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    code, unreachable, _ = run_cli(
        "publish", variants[0], "--to", f"s3://{bucket}", "--model", "m", "--endpoint-url", dead
    )
    assert code == EXIT_PUBLISH
    assert "cannot reach the S3 endpoint" in unreachable["error"]["message"]
    assert dead in unreachable["error"]["message"]
    # Nothing was written by any of the failed attempts.
    assert _keys(object_store.client(), bucket) == []


def test_destination_flags_are_checked(
    run_cli: Callable, variants: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as both:
        main(
            ["publish", str(variants[0]), "--to", "s3://bucket", "--base-path", str(tmp_path), "--model", "m"]
        )
    assert both.value.code == EXIT_USAGE
    assert "argument --base-path: not allowed with argument --to" in capsys.readouterr().err
    code, not_s3, _ = run_cli("publish", variants[0], "--to", str(tmp_path), "--model", "m")
    assert code == EXIT_USAGE and "--to takes an s3://" in not_s3["error"]["message"]
    code, image, _ = run_cli(
        "publish", variants[0], "--to", "s3://bucket", "--model", "m", "--image", "127.0.0.1:1/x:1"
    )
    assert code == EXIT_USAGE and "--image" in image["error"]["message"]
    code, endpoint, _ = run_cli(
        "publish", variants[0], "--base-path", tmp_path, "--model", "m", "--endpoint-url", "http://h:1"
    )
    assert code == EXIT_USAGE and "apply to s3:// locations only" in endpoint["error"]["message"]
