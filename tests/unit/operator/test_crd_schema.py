"""The CRD file is the API's single source of truth: it must be complete and self-documenting."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[3]


def test_every_schema_field_is_described():
    crd_doc = yaml.safe_load((ROOT / "crds" / "servedmodel.io_servedmodels.yaml").read_text())
    schema = crd_doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    missing = []

    def walk(node, path):
        for name, sub in (node.get("properties") or {}).items():
            here = f"{path}.{name}"
            if name != "metadata" and "description" not in sub:
                missing.append(here)
            walk(sub, here)
        if isinstance(node.get("items"), dict):
            walk(node["items"], path + "[]")

    walk(schema, "")
    assert missing == []


def test_api_reference_is_generated_from_the_schema():
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "docs" / "gen_api_reference.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
