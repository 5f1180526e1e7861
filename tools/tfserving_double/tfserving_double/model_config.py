"""``--model_config_file``: parse and validate a ``ModelServerConfig`` (reference §4.1, §4.2)."""

from __future__ import annotations

import dataclasses
from typing import Any

from .errors import invalid
from .protos import config_pb2, parse_proto_text_file


@dataclasses.dataclass(frozen=True)
class ModelSpecConfig:
    """One ``ModelConfig`` entry reduced to what the double uses."""

    name: str
    base_path: str
    platform: str
    policy: str = "latest"  # latest | all | specific
    num_versions: int = 1
    specific_versions: tuple[int, ...] = ()
    labels: tuple[tuple[str, int], ...] = ()


def models_from_config(config: Any) -> list[ModelSpecConfig]:
    """Convert a parsed ModelServerConfig; a non-list config (custom_model_config) is unsupported."""
    if config.WhichOneof("config") == "custom_model_config":
        raise invalid("ModelServerConfig.custom_model_config is not supported by the test double")
    out = []
    for c in config.model_config_list.config:
        pol = c.model_version_policy
        choice = pol.WhichOneof("policy_choice") or "latest"
        out.append(ModelSpecConfig(
            name=c.name, base_path=c.base_path, platform=c.model_platform, policy=choice,
            num_versions=max(pol.latest.num_versions, 1),  # 0 is treated as 1 (§4.1)
            specific_versions=tuple(pol.specific.versions),
            labels=tuple(sorted(c.version_labels.items()))))
    return out


def validate_models(models: list[ModelSpecConfig]) -> None:
    """ValidateModelConfigList (§4.1); all failures are INVALID_ARGUMENT."""
    seen: set[str] = set()
    for m in models:
        if m.name in seen:
            raise invalid(f"Illegal to list model {m.name} multiple times in config list")
        seen.add(m.name)
        if not m.platform:
            raise invalid("Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
                           "ModelServerConfig::model_platform.")
        if m.platform != "tensorflow":
            raise invalid(f"Model {m.name} requests unsupported platform {m.platform}")
        if not (m.base_path.startswith("/") or "://" in m.base_path):
            raise invalid(f"Expected model {m.name} to have an absolute path or URI; got "
                           f"base_path()={m.base_path}")


def load_model_config_file(path: str) -> list[ModelSpecConfig]:
    """Read, parse and validate a ``--model_config_file``."""
    models = models_from_config(parse_proto_text_file(path, config_pb2().ModelServerConfig()))
    validate_models(models)
    return models

