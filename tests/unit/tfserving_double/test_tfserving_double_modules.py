"""The package's modules one by one, without a server: pure functions with facts from the reference."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest
from tfsd_helpers import add_version
from tfserving_double import TFError
from tfserving_double.inference import check_input_aliases
from tfserving_double.json_tensors import predict_response
from tfserving_double.json_text import error_body, parse_json_object, rapidjson_pretty
from tfserving_double.model_config import ModelSpecConfig, validate_models
from tfserving_double.servable import load_servable
from tfserving_double.tensors import array_to_json, json_to_array
from tfserving_double.version_dirs import aspired_versions


def spec(base: Path, **kw: object) -> ModelSpecConfig:
    return ModelSpecConfig(name="m", base_path=str(base), platform="tensorflow", **kw)  # type: ignore[arg-type]


def test_version_dirs_apply_the_policy(base: Path) -> None:
    for v in ("1", "002", "3", "temp-4", "5.tmp"):
        (base / v).mkdir()
    logs: list[str] = []

    def log(level: str, source: str, message: str) -> None:
        logs.append(message)

    assert sorted(aspired_versions(spec(base), log)) == [3]
    assert sorted(aspired_versions(spec(base, num_versions=2), log)) == [2, 3]
    assert sorted(aspired_versions(spec(base, policy="all"), log)) == [1, 2, 3]
    assert sorted(aspired_versions(spec(base, policy="specific", specific_versions=(1, 9)), log)) == [1]
    assert any("Version 9 of servable m" in line for line in logs)
    with pytest.raises(TFError) as err:
        aspired_versions(spec(base / "missing"), log)
    assert err.value.code == "NOT_FOUND" and "Could not find base path" in err.value.message


def test_model_config_validation() -> None:
    with pytest.raises(TFError, match="requests unsupported platform pytorch"):
        validate_models([ModelSpecConfig(name="m", base_path="/m", platform="pytorch")])
    with pytest.raises(TFError, match="to have an absolute path or URI"):
        validate_models([ModelSpecConfig(name="m", base_path="rel/m", platform="tensorflow")])


def test_json_text_layout_and_parse_errors() -> None:
    assert error_body('say "hi"') == '{\n    "error": "say \\"hi\\""\n}'
    assert rapidjson_pretty([2.0, np.float32(0.1), float("nan"), -float("inf")]) == (
        "[\n    2.0,\n    0.1,\n    NaN,\n    -Infinity\n]"
    )
    assert parse_json_object(b'{"a": NaN}')["a"] != 0
    with pytest.raises(TFError, match="Invalid value. at offset: 5"):
        parse_json_object(b'{"a":]')


def test_tensors_from_json_and_back() -> None:
    strings = json_to_array([["a", {"b64": base64.b64encode(b"\x00\xff").decode()}]], "string")
    assert strings.shape == (1, 2) and strings[0][1] == b"\x00\xff"
    assert json_to_array([[1, 2]], "int64").dtype == np.int64
    assert json_to_array([1.5], "float").dtype == np.float32
    assert array_to_json(np.array([b"\x01"], dtype=object), "out_bytes") == [{"b64": "AQ=="}]
    assert array_to_json(np.array([b"text"], dtype=object), "out") == ["text"]
    assert array_to_json(np.array([[True, False]]), "b") == [[True, False]]
    assert array_to_json(np.array([3], dtype=np.int32), "n") == [3]


def test_predict_response_shapes() -> None:
    single = predict_response("row", {"y": np.array([[1.0], [2.0]], dtype=np.float32)})
    assert single.replace(" ", "").replace("\n", "") == '{"predictions":[[1.0],[2.0]]}'
    multi = predict_response("row", {"a": np.array([1, 2]), "b": np.array([[3], [4]])})
    assert multi.replace(" ", "").replace("\n", "") == '{"predictions":[{"a":1,"b":[3]},{"a":2,"b":[4]}]}'
    columnar = predict_response("columnar", {"a": np.array(5), "b": np.array([1])})
    assert columnar.replace(" ", "").replace("\n", "") == '{"outputs":{"a":5,"b":[1]}}'
    with pytest.raises(TFError, match="Tensor name: b has inconsistent batch size: 3 expecting: 2"):
        predict_response("row", {"a": np.zeros(2), "b": np.zeros(3)})
    with pytest.raises(TFError, match="Tensor name: a has no shape information"):
        predict_response("row", {"a": np.array(1.0)})


def test_placeholder_versions_load_without_tensorflow_session(base: Path) -> None:
    servable = load_servable(str(add_version(base, 1)))
    assert servable.placeholder and list(servable.signatures.signature_def) == ["serving_default"]
    with pytest.raises(TFError, match="Could not find SavedModel"):
        load_servable(str(add_version(base, 2, loadable=False)))


def test_input_aliases_must_match_the_signature() -> None:
    from tensorflow_serving.apis import get_model_metadata_pb2

    sdm = get_model_metadata_pb2.SignatureDefMap()
    sig = sdm.signature_def["serving_default"]
    sig.inputs["a"].name, sig.inputs["b"].name = "a:0", "b:0"
    check_input_aliases(sig, {"a", "b"})
    with pytest.raises(TFError) as err:
        check_input_aliases(sig, {"a", "c"})
    assert err.value.message == (
        "input size does not match signature: 2!=2 len({a,b}). Sent extra: {c}. Missing but required: {b}."
    )
