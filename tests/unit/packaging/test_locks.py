"""The lock files in requirements/ agree with pyproject.toml and with each other.

A dependency added to pyproject.toml without `make lock` would leave the venv and the images without it;
a package pinned to two versions in two locks would make the images differ from what the tests ran.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[3]
LOCKS = ROOT / "requirements"
PROJECT = "servedmodel-operator"


def pins(lock: str) -> dict[str, str]:
    """name -> version for every `name==version` line, checking that each carries sha256 hashes."""
    text = (LOCKS / lock).read_text()
    pin = r"^([A-Za-z0-9._-]+)==([^\s\\]+)((?:\s*\\\n\s+--hash=sha256:[0-9a-f]{64})*)"
    entries = re.findall(pin, text, re.M)
    found = {}
    for name, version, hashes in entries:
        assert hashes, f"{lock}: {name}=={version} has no --hash"
        found[canonicalize_name(name)] = version
    requirement_lines = [ln for ln in text.splitlines() if ln and not ln.startswith((" ", "#"))]
    assert len(requirement_lines) == len(found), f"{lock}: lines that are not hashed pins: " + str(
        [ln for ln in requirement_lines if not re.match(r"^[A-Za-z0-9._-]+==", ln)]
    )
    return found


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def requirements(*extras: str) -> list[Requirement]:
    project = pyproject()["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in extras:
        reqs += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return [r for r in reqs if canonicalize_name(r.name) != PROJECT]


ALL_EXTRAS = tuple(pyproject()["project"]["optional-dependencies"])


@pytest.mark.parametrize(
    ("lock", "extras"),
    [("operator.lock", ()), ("exporter.lock", ("exporter",)), ("dev.lock", ALL_EXTRAS)],
)
def test_lock_pins_every_declared_dependency_within_its_range(lock: str, extras: tuple[str, ...]) -> None:
    locked = pins(lock)
    for req in requirements(*extras):
        name = canonicalize_name(req.name)
        assert name in locked, f"{req} is in pyproject.toml but not in requirements/{lock}: run `make lock`"
        assert req.specifier.contains(locked[name], prereleases=True), (
            f"requirements/{lock} pins {name}=={locked[name]}, outside pyproject's {req}: run `make lock`"
        )


def test_build_lock_pins_the_build_system() -> None:
    locked = pins("build.lock")
    for spec in pyproject()["build-system"]["requires"]:
        req = Requirement(spec)
        assert req.specifier.contains(locked[canonicalize_name(req.name)])


@pytest.mark.parametrize("lock", ["operator.lock", "exporter.lock", "build.lock"])
def test_image_locks_use_the_dev_versions(lock: str) -> None:
    """The images install what the tests ran against: the same version of every package."""
    dev = pins("dev.lock")
    for name, version in pins(lock).items():
        assert dev.get(name) == version, f"{lock} pins {name}=={version}, dev.lock {dev.get(name)}"


def test_operator_image_lock_has_no_tensorflow() -> None:
    assert "tensorflow" not in pins("operator.lock")
    assert pins("exporter.lock")["tensorflow"] == pins("dev.lock")["tensorflow"]


def test_locks_do_not_name_a_local_path() -> None:
    for lock in LOCKS.glob("*.lock"):
        assert "file://" not in lock.read_text(), lock
