"""Reference §2 / checklist 1: ports open only after every model is AVAILABLE; failures; waiting forever."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests
from tfsd_helpers import add_version, listening_addresses, model_config, port_open, wait_until
from tfserving_double import StartupError


def test_ports_closed_while_loading_then_open(make_double, base: Path) -> None:
    add_version(base, 1)
    d = make_double(model_name="m", model_base_path=str(base), load_delay_seconds=1.0)
    d.start(wait=False)
    assert wait_until(lambda: 1 in d.manager.version_states("m"), timeout=15)
    assert d.manager.version_states("m")[1].state in ("START", "LOADING")
    assert not port_open(d.grpc_port) and not port_open(d.rest_port)
    assert d.wait_ready(timeout=15)
    assert port_open(d.grpc_port) and port_open(d.rest_port)
    body = requests.get(f"{d.rest_url}/v1/models/m", timeout=5).json()
    assert body["model_version_status"][0]["state"] == "AVAILABLE"


def test_every_configured_model_must_be_available(make_double, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    add_version(a, 1)
    b.mkdir()
    cfg = tmp_path / "models.config"
    cfg.write_text(model_config({"name": "a", "base_path": a}, {"name": "b", "base_path": b}))
    d = make_double(model_config_file=str(cfg)).start(wait=False)
    assert wait_until(
        lambda: (
            d.manager.version_states("a").get(1) is not None
            and d.manager.version_states("a")[1].state == "AVAILABLE"
        ),
        timeout=15,
    )
    assert not d.wait_ready(timeout=0.6), "must keep waiting for model b"
    assert not port_open(d.rest_port)
    add_version(b, 3)
    assert d.wait_ready(timeout=10)
    assert requests.get(f"{d.rest_url}/v1/models/b", timeout=5).status_code == 200


def test_no_versions_blocks_with_warning(make_double, base: Path) -> None:
    (base / "temp-123").mkdir()  # non-numeric: ignored
    d = make_double(model_name="m", model_base_path=str(base)).start(wait=False)
    warning = (
        f"No versions of servable m found under base path {base}. Did you forget to name your leaf "
        f"directory as a number (eg. '/1/')?"
    )
    assert wait_until(lambda: any(warning in line and ": W " in line for line in d.logs), timeout=15)
    assert not d.wait_ready(timeout=0.5) and d.startup_error is None
    assert not port_open(d.grpc_port) and not port_open(d.rest_port)
    add_version(base, 7)
    assert d.wait_ready(timeout=10)


def test_missing_base_path_keeps_waiting(make_double, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    d = make_double(model_name="m", model_base_path=str(missing)).start(wait=False)
    expected = (
        "FileSystemStoragePathSource encountered a filesystem access error: Could not find base path "
        f"{missing} for servable m"
    )
    assert wait_until(lambda: any(expected in line for line in d.logs), timeout=15)
    assert not d.wait_ready(timeout=0.3)
    add_version(missing, 1)
    assert d.wait_ready(timeout=10)


def test_poll_once_without_versions_waits_forever(make_double, base: Path) -> None:
    d = make_double(model_name="m", model_base_path=str(base), file_system_poll_wait_seconds=0)
    d.start(wait=False)
    assert wait_until(lambda: any("No versions of servable m" in line for line in d.logs), timeout=15)
    add_version(base, 1)  # too late: the only poll already happened
    assert not d.wait_ready(timeout=0.8)
    assert d.manager.version_states("m") == {}


def test_initial_load_failure_is_a_startup_error(make_double, base: Path) -> None:
    add_version(base, 1, loadable=False)
    d = make_double(model_name="m", model_base_path=str(base))
    with pytest.raises(StartupError) as err:
        d.start(timeout=15)
    assert err.value.code == "UNKNOWN"
    assert str(err.value) == "UNKNOWN: Some models did not become available: {m}"
    assert not port_open(d.grpc_port) and not port_open(d.rest_port)
    rec = d.manager.version_states("m")[1]
    assert (rec.state, rec.error_code) == ("END", "NOT_FOUND")
    assert "Could not find SavedModel .pb or .pbtxt at supplied export directory path" in rec.error_message


def test_load_retries_keep_loading_until_the_file_appears(make_double, base: Path) -> None:
    vdir = add_version(base, 1, loadable=False)
    d = make_double(
        model_name="m", model_base_path=str(base), max_num_load_retries=5, load_retry_interval_seconds=0.3
    ).start(wait=False)
    assert wait_until(
        lambda: (
            d.manager.version_states("m").get(1) is not None
            and d.manager.version_states("m")[1].state == "LOADING"
        ),
        timeout=15,
    )
    (vdir / "saved_model.pbtxt").write_text("")  # a .pbtxt is accepted too
    assert d.wait_ready(timeout=10)


def test_initial_labels_need_the_allow_flag(make_double, base: Path, tmp_path: Path) -> None:
    add_version(base, 1)
    cfg = tmp_path / "models.config"
    cfg.write_text(
        model_config(
            {"name": "m", "base_path": base, "extra": '    version_labels { key: "stable" value: 1 }\n'}
        )
    )
    with pytest.raises(StartupError) as err:
        make_double(model_config_file=str(cfg)).start(timeout=15)
    assert str(err.value) == (
        "FAILED_PRECONDITION: Request to assign label to version 1 of model m, which "
        "is not currently available for inference"
    )
    d = make_double(model_config_file=str(cfg), allow_version_labels_for_unavailable_models=True)
    d.start(timeout=15)
    r = requests.get(f"{d.rest_url}/v1/models/m/labels/stable/metadata", timeout=5)
    assert r.status_code == 200 and r.json()["model_spec"]["version"] == "1"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "",
            "Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
            "ModelServerConfig::model_platform.",
        ),
        ('    model_platform: "tensorflow"\n', None),
    ],
)
def test_config_validation(make_double, base: Path, tmp_path: Path, extra: str, message: str | None) -> None:
    add_version(base, 1)
    cfg = tmp_path / "models.config"
    cfg.write_text(f'model_config_list {{ config {{ name: "m" base_path: "{base}"\n{extra} }} }}\n')
    d = make_double(model_config_file=str(cfg))
    if message is None:
        assert d.start(timeout=15).ready
    else:
        with pytest.raises(StartupError) as err:
            d.start(timeout=15)
        assert (err.value.code, err.value.message) == ("INVALID_ARGUMENT", message)


def test_duplicate_relative_and_unsupported_models_rejected(make_double, base: Path, tmp_path: Path) -> None:
    cases = {
        model_config(
            {"name": "m", "base_path": base}, {"name": "m", "base_path": base}
        ): "Illegal to list model m multiple times in config list",
        model_config(
            {"name": "m", "base_path": "relative/m"}
        ): "Expected model m to have an absolute path or URI; got base_path()=relative/m",
        model_config({"name": "m", "base_path": base}).replace(
            '"tensorflow"', '"onnx"'
        ): "Model m requests unsupported platform onnx",
    }
    for i, (text, message) in enumerate(cases.items()):
        cfg = tmp_path / f"c{i}.config"
        cfg.write_text(text)
        with pytest.raises(StartupError) as err:
            make_double(model_config_file=str(cfg)).start(timeout=15)
        assert err.value.message == message


def test_invalid_config_file(make_double, tmp_path: Path) -> None:
    cfg = tmp_path / "models.config"
    cfg.write_text("model_config_list { config { nam: 1 } }")
    with pytest.raises(StartupError) as err:
        make_double(model_config_file=str(cfg)).start(timeout=15)
    assert str(err.value) == f"INVALID_ARGUMENT: Invalid protobuf file: '{cfg}'"


def test_rest_off_and_same_port_are_not_fatal(make_double, base: Path) -> None:
    add_version(base, 1)
    off = make_double(model_name="m", model_base_path=str(base), rest_api_port=None).start(timeout=15)
    assert port_open(off.grpc_port) and off.rest_port is None
    same = make_double(model_name="m", model_base_path=str(base))
    same.options.port = same.options.rest_api_port  # --rest_api_port equal to --port
    same.start(timeout=15)
    assert any("server_options.http_port cannot be same as grpc_port" in line for line in same.logs)
    assert port_open(same.grpc_port)


def test_in_process_double_binds_loopback_only(served) -> None:
    """The program binds every interface like the real server (see the CLI tests); in-process, loopback."""
    assert listening_addresses(served.rest_port) == {"127.0.0.1"}
    assert listening_addresses(served.grpc_port) == {"127.0.0.1"}
