"""Release versions agree: the chart's appVersion is the package version, and the chart's default image
tag (empty: the appVersion) is what `make images` and the release tags use."""

from __future__ import annotations

from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "servedmodel-operator"


def test_chart_app_version_is_the_package_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == version
    assert chart["version"] == version


def test_default_image_tag_is_the_app_version() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["image"]["tag"] == "", "an empty tag means the appVersion (templates/_helpers.tpl)"
    assert values["image"]["digest"] == ""
    # dist/install.yaml is the chart rendered with its defaults (tools/helm/render.sh)
    install = (ROOT / "dist" / "install.yaml").read_text()
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert f'image: "{values["image"]["repository"]}:{version}"' in install


def test_default_exporter_image_tag_is_the_app_version() -> None:
    from servedmodel_operator.constants import DEFAULT_EXPORTER_IMAGE

    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert DEFAULT_EXPORTER_IMAGE.endswith(f"/servedmodel-exporter:{version}")
    crd = (ROOT / "crds" / "servedmodel.io_servedmodels.yaml").read_text()
    assert f"default: {DEFAULT_EXPORTER_IMAGE}\n" in crd


def test_exporter_package_version_is_the_package_version() -> None:
    import servedmodel_exporter
    import servedmodel_operator

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert servedmodel_exporter.__version__ == version
    assert servedmodel_operator.__version__ == version
