"""Reference §4.1, §4.2, §5: version discovery, polling, config reloads and label rules."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import requests
from tfsd_helpers import add_version, model_config, wait_until
from tfserving_double import parse_version_dir


def _states(d, name: str = "m") -> dict[int, str]:
    return {v: r.state for v, r in d.manager.version_states(name).items()}


def _status(d, name: str = "m") -> dict[str, str]:
    body = requests.get(f"{d.rest_url}/v1/models/{name}", timeout=5).json()
    return {s["version"]: s["state"] for s in body["model_version_status"]}


@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("1", 1),
        ("00000123", 123),
        (" 42 ", 42),
        ("-3", -3),
        ("9223372036854775807", 2**63 - 1),
        ("9223372036854775808", None),
        ("temp-123", None),
        ("123.tmp", None),
        (".123", None),
        ("v1", None),
        ("1.0", None),
        ("_tmp", None),
        ("+1", None),
        ("", None),
        ("１", None),
        ("1_000", None),
    ],
)
def test_safe_strto64_rules(name: str, version: int | None) -> None:
    assert parse_version_dir(name) == version


def test_new_version_loads_and_old_unloads(make_double, base: Path) -> None:
    add_version(base, 1)
    d = make_double(model_name="m", model_base_path=str(base)).start()
    add_version(base, "0002")  # leading zeros are fine
    assert d.wait_for_state("m", 1, "END", timeout=10)
    assert _status(d) == {"2": "AVAILABLE", "1": "END"}


def test_non_numeric_children_ignored(make_double, base: Path) -> None:
    add_version(base, 1)
    d = make_double(model_name="m", model_base_path=str(base)).start()
    for junk in ("temp-5", "5.tmp", "v5"):
        add_version(base, junk)
    d.poll_now()
    assert _states(d) == {1: "AVAILABLE"}


def test_removed_version_dir_unloads(make_double, base: Path, tmp_path: Path) -> None:
    for v in (1, 2):
        add_version(base, v)
    cfg = tmp_path / "models.config"
    all_policy = "    model_version_policy { all {} }\n"
    cfg.write_text(model_config({"name": "m", "base_path": base, "extra": all_policy}))
    d = make_double(model_config_file=str(cfg)).start()
    assert wait_until(lambda: _states(d) == {1: "AVAILABLE", 2: "AVAILABLE"}, timeout=10)
    shutil.rmtree(base / "2")
    assert d.wait_for_state("m", 2, "END", timeout=10)
    assert _status(d) == {"2": "END", "1": "AVAILABLE"}


def test_latest_falls_back_when_newest_removed(make_double, base: Path) -> None:
    add_version(base, 1)
    d = make_double(model_name="m", model_base_path=str(base)).start()
    add_version(base, 2)
    assert d.wait_for_state("m", 1, "END", timeout=10)
    shutil.rmtree(base / "2")
    assert d.wait_for_state("m", 1, "AVAILABLE", timeout=10) and d.wait_for_state("m", 2, "END", timeout=10)


def test_zero_numeric_children_unloads_everything(make_double, base: Path) -> None:
    add_version(base, 1)
    d = make_double(model_name="m", model_base_path=str(base)).start()
    (base / "1").rename(base / "old-1")
    assert d.wait_for_state("m", 1, "END", timeout=10)
    r = requests.post(f"{d.rest_url}/v1/models/m:predict", json={"instances": [1.0]}, timeout=5)
    assert r.status_code == 404 and r.json() == {"error": "Servable not found for request: Latest(m)"}


def test_failed_new_version_not_retried_old_keeps_serving(make_double, base: Path) -> None:
    add_version(base, 1)
    d = make_double(model_name="m", model_base_path=str(base)).start()
    vdir = add_version(base, 2, loadable=False)
    assert d.wait_for_state("m", 2, "END", timeout=10)
    (vdir / "saved_model.pb").write_bytes(b"late")  # stays aspired: never retried
    d.poll_now()
    d.poll_now()
    assert _states(d) == {1: "AVAILABLE", 2: "END"}


def test_missing_base_path_blocks_every_model_update(make_double, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    add_version(a, 1)
    add_version(b, 1)
    cfg = tmp_path / "models.config"
    cfg.write_text(model_config({"name": "a", "base_path": a}, {"name": "b", "base_path": b}))
    d = make_double(model_config_file=str(cfg)).start()
    shutil.move(str(b), str(tmp_path / "b-away"))
    add_version(a, 2)
    d.poll_now()
    assert 2 not in _states(d, "a")
    assert any("Could not find base path" in line for line in d.logs)
    shutil.move(str(tmp_path / "b-away"), str(b))
    assert d.wait_for_state("a", 2, "AVAILABLE", timeout=10)


def test_duplicate_and_missing_specific_versions_warn(make_double, base: Path, tmp_path: Path) -> None:
    add_version(base, 1)
    add_version(base, "01")
    cfg = tmp_path / "models.config"
    cfg.write_text(
        model_config(
            {
                "name": "m",
                "base_path": base,
                "extra": "model_version_policy { specific { versions: 1 versions: 4 } }\n",
            }
        )
    )
    d = make_double(model_config_file=str(cfg)).start()
    assert any("Duplicate version directories detected" in line for line in d.logs)
    assert any(
        "Version 4 of servable m, which was requested to be served as a 'specific' version" in line
        for line in d.logs
    )
    assert _states(d) == {1: "AVAILABLE"}


def test_config_reload_changes_policy(make_double, base: Path, tmp_path: Path) -> None:
    for v in (1, 2, 3):
        add_version(base, v)
    cfg = tmp_path / "models.config"
    cfg.write_text(model_config({"name": "m", "base_path": base}))
    d = make_double(model_config_file=str(cfg), model_config_file_poll_wait_seconds=0.3).start()
    assert _states(d) == {3: "AVAILABLE"}
    cfg.write_text(
        model_config(
            {
                "name": "m",
                "base_path": base,
                "extra": "    model_version_policy { specific { versions: 1 } }\n",
            }
        )
    )
    assert d.wait_for_state("m", 1, "AVAILABLE", timeout=10) and d.wait_for_state("m", 3, "END", timeout=10)
    cfg.write_text(
        model_config(
            {
                "name": "m",
                "base_path": base,
                "extra": "    model_version_policy { latest { num_versions: 2 } }\n",
            }
        )
    )
    assert wait_until(lambda: _states(d) == {1: "END", 2: "AVAILABLE", 3: "AVAILABLE"}, timeout=10)


def test_config_reload_read_error_keeps_old_config(make_double, base: Path, tmp_path: Path) -> None:
    add_version(base, 1)
    cfg = tmp_path / "models.config"
    cfg.write_text(model_config({"name": "m", "base_path": base}))
    d = make_double(model_config_file=str(cfg)).start()
    cfg.write_text("garbage {")
    err = d.reload_config_now()
    assert err is not None and err.message == f"Invalid protobuf file: '{cfg}'"
    assert any("Failed to read ModelServerConfig file" in line for line in d.logs)
    assert d.manager.model_names() == ["m"] and _states(d) == {1: "AVAILABLE"}


def test_config_reload_adds_model_and_waits(make_double, base: Path, tmp_path: Path) -> None:
    add_version(base, 1)
    other = tmp_path / "other"
    add_version(other, 4)
    cfg = tmp_path / "models.config"
    cfg.write_text(model_config({"name": "m", "base_path": base}))
    d = make_double(model_config_file=str(cfg), load_delay_seconds=0.3).start()
    cfg.write_text(model_config({"name": "m", "base_path": base}, {"name": "other", "base_path": other}))
    assert d.reload_config_now() is None
    assert _states(d, "other") == {4: "AVAILABLE"}, "reload returns only once the new model is available"


def _labels_cfg(cfg: Path, base: Path, labels: dict[str, int]) -> None:
    extra = "    model_version_policy { all {} }\n" + "".join(
        f'    version_labels {{ key: "{k}" value: {v} }}\n' for k, v in labels.items()
    )
    cfg.write_text(model_config({"name": "m", "base_path": base, "extra": extra}))


def test_label_rules_without_allow_flag(make_double, base: Path, tmp_path: Path) -> None:
    add_version(base, 1)
    cfg = tmp_path / "models.config"
    _labels_cfg(cfg, base, {})
    d = make_double(model_config_file=str(cfg)).start()
    _labels_cfg(cfg, base, {"stable": 1})
    assert d.reload_config_now() is None and d.manager.labels("m") == {"stable": 1}
    _labels_cfg(cfg, base, {"stable": 1, "canary": 2})  # version 2 does not exist yet
    err = d.reload_config_now()
    assert err is not None and err.code == "FAILED_PRECONDITION"
    assert err.message == (
        "Request to assign label to version 2 of model m, which is not currently available for inference"
    )
    assert d.manager.labels("m") == {"stable": 1}
    add_version(base, 2)
    assert d.wait_for_state("m", 2, "AVAILABLE", timeout=10)
    assert d.reload_config_now() is None and d.manager.labels("m") == {"stable": 1, "canary": 2}
    r = requests.post(f"{d.rest_url}/v1/models/m/labels/canary:predict", json={"instances": [1.0]}, timeout=5)
    assert r.status_code == 200


def test_label_rules_with_allow_flag(make_double, base: Path, tmp_path: Path) -> None:
    add_version(base, 1)
    cfg = tmp_path / "models.config"
    _labels_cfg(cfg, base, {"stable": 1, "canary": 2})  # new label on an unavailable version: allowed
    d = make_double(model_config_file=str(cfg), allow_version_labels_for_unavailable_models=True).start()
    assert d.manager.labels("m") == {"stable": 1, "canary": 2}
    r = requests.post(f"{d.rest_url}/v1/models/m/labels/canary:predict", json={"instances": [1.0]}, timeout=5)
    assert r.status_code == 404 and r.json() == {"error": "Servable not found for request: Specific(m, 2)"}
    _labels_cfg(cfg, base, {"stable": 3, "canary": 2})  # moving an existing label needs an AVAILABLE target
    err = d.reload_config_now()
    assert err is not None and "assign label to version 3 of model m" in err.message
    assert d.manager.labels("m") == {"stable": 1, "canary": 2}
