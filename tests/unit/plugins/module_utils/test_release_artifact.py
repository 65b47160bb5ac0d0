"""Release artifacts: the version is read from the wheel's own metadata, and bad artifacts are refused
with the file and the values named. The reference wheel is built for real (scripts/build-release.sh)."""

import ast
import hashlib
import subprocess
import zipfile
from pathlib import Path

import pytest

from ansible_collections.rehab.scale.plugins.module_utils.release_artifact import (
    ArtifactError,
    describe,
    wheel_info,
)

ROOT = Path(__file__).resolve().parents[4]


def code_version():
    tree = ast.parse((ROOT / "app/rehab_agi/__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "__version__":
            return node.value.value
    raise AssertionError("__version__ not found")


@pytest.fixture(scope="module")
def reference_wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        [str(ROOT / "scripts/build-release.sh"), str(ROOT / "app"), str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(built.stdout.strip())


def fake_wheel(path, metadata="Metadata-Version: 2.1\nName: demo\nVersion: 2.0.0\n", wheel="Tag: py3-none-any\n"):
    with zipfile.ZipFile(path, "w") as archive:
        if metadata is not None:
            archive.writestr("demo-2.0.0.dist-info/METADATA", metadata)
        if wheel is not None:
            archive.writestr("demo-2.0.0.dist-info/WHEEL", wheel)
    return str(path)


def test_the_reference_wheel_carries_the_codes_version(reference_wheel):
    info = wheel_info(str(reference_wheel))
    assert info["version"] == code_version()
    assert info["name"] == "rehab-agi"
    assert info["filename"] == reference_wheel.name == f"rehab_agi-{code_version()}-py3-none-any.whl"
    assert info["entry_points"] == ["rehab-agi"]
    assert sorted(info["requires"]) == ["prometheus-client", "psycopg2", "redis", "rehab-shard-map>=1.0,<2"]


def test_the_build_is_reproducible(reference_wheel, tmp_path):
    again = subprocess.run(
        [str(ROOT / "scripts/build-release.sh"), str(ROOT / "app"), str(tmp_path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert Path(again).read_bytes() == reference_wheel.read_bytes()


def test_describe_checks_checksum_and_version(reference_wheel):
    digest = hashlib.sha256(reference_wheel.read_bytes()).hexdigest()
    info = describe(str(reference_wheel), digest.upper(), code_version())
    assert info["sha256"] == digest
    with pytest.raises(ArtifactError, match=f"checksum mismatch for .*sha256 is {digest}, app_release.sha256 says 0+"):
        describe(str(reference_wheel), "0" * 64)
    with pytest.raises(ArtifactError, match=f"carries version {code_version()}, app_release.version says 9.9.9"):
        describe(str(reference_wheel), version="9.9.9")


def test_the_file_name_does_not_decide_the_version(tmp_path):
    path = fake_wheel(tmp_path / "rehab_agi-7.0.0-py3-none-any.whl")
    info = wheel_info(path)
    assert (info["version"], info["filename"]) == ("2.0.0", "demo-2.0.0-py3-none-any.whl")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metadata": None}, "lacks demo-2.0.0.dist-info/METADATA"),
        ({"wheel": None}, "lacks demo-2.0.0.dist-info/WHEEL"),
        ({"metadata": "Name: demo\n"}, "lacks Name, Version"),
        ({"metadata": "Name: demo\nVersion: ../../etc\n"}, "is not a PEP 440 version"),
    ],
)
def test_broken_wheels_are_refused(tmp_path, kwargs, message):
    with pytest.raises(ArtifactError, match=message):
        wheel_info(fake_wheel(tmp_path / "x.whl", **kwargs))


def test_a_file_that_is_not_a_zip_is_refused(tmp_path):
    path = tmp_path / "notes.whl"
    path.write_text("not a wheel")
    with pytest.raises(ArtifactError, match="is not a wheel"):
        wheel_info(str(path))
