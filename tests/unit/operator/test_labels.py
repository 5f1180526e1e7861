"""Label moves wait for their version, as TF Serving requires (reference 4.2)."""

from __future__ import annotations

from google.protobuf import text_format
from servedmodel_operator.labels import applied_labels, hold, pending_message, staged_labels
from servedmodel_operator.render import render
from servedmodel_operator.spec import parse
from tensorflow_serving.config import model_server_config_pb2


def test_new_labels_go_anywhere_moves_wait_for_available():
    assert staged_labels({"stable": 3}, None, set()) == ({"stable": 3}, {})
    assert staged_labels({"stable": 4}, {"stable": 3}, {3}) == ({"stable": 3}, {"stable": (3, 4)})
    assert staged_labels({"stable": 4}, {"stable": 3}, {3, 4}) == ({"stable": 4}, {})
    assert staged_labels({"stable": 3, "canary": 4}, {"stable": 3}, set()) == ({"stable": 3, "canary": 4}, {})


def test_held_version_stays_in_a_specific_policy_and_is_recorded_on_the_configmap():
    spec = parse(
        {
            "metadata": {"name": "m", "namespace": "ns", "uid": "u"},
            "spec": {
                "storage": {"persistentVolumeClaim": {"claimName": "c"}},
                "versionPolicy": {"specific": {"versions": [4]}},
                "versionLabels": {"stable": 4},
            },
        }
    )
    labels, held = staged_labels(spec.version_labels, {"stable": 3}, {3})
    rendered = render(hold(spec, labels, held))[0]
    cfg = text_format.Parse(rendered["data"]["models.config"], model_server_config_pb2.ModelServerConfig())
    model = cfg.model_config_list.config[0]
    assert list(model.model_version_policy.specific.versions) == [3, 4]  # 4 loads while 3 keeps its label
    assert dict(model.version_labels) == {"stable": 3}
    assert applied_labels(rendered) == {"stable": 3}
    assert (
        pending_message(held)
        == "Version labels wait for their versions to load: stable stays on 3 until 4 is AVAILABLE."
    )
    assert applied_labels(render(spec)[0]) == {"stable": 4}
    assert applied_labels(None) is None
