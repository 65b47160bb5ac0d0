# Copyright: rehab-scale maintainers
# Apache License 2.0 (see LICENSE)
"""What a release artifact is: a Python wheel, read without installing it.

The version deployed is the one the wheel's own metadata carries (PEP 427 and the core metadata
specification), so a file name cannot claim a version its code does not have.
"""

from __future__ import annotations

import hashlib
import re
import zipfile
from email.parser import HeaderParser

from ansible_collections.rehab.scale.plugins.module_utils.migrations import MigrationError, from_members

# A version as PEP 440 writes it (public part, optional local part): also a safe directory name.
VERSION_RE = re.compile(r"^[0-9]+(\.[0-9]+)*((a|b|rc)[0-9]+)?(\.post[0-9]+)?(\.dev[0-9]+)?(\+[A-Za-z0-9.]+)?$")


class ArtifactError(ValueError):
    """The artifact is not a release this toolkit can deploy; the message says why."""


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def wheel_info(path: str) -> dict:
    """Name, version, tags and canonical file name of the wheel at path."""
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise ArtifactError(f"{path} is not a wheel (a zip archive): {exc}") from exc
    with archive:
        names = archive.namelist()
        dist_infos = sorted({n.split("/", 1)[0] for n in names if n.split("/", 1)[0].endswith(".dist-info")})
        if len(dist_infos) != 1:
            raise ArtifactError(f"{path}: expected one .dist-info directory, found {dist_infos or 'none'}")
        dist_info = dist_infos[0]
        missing = [f"{dist_info}/{n}" for n in ("METADATA", "WHEEL") if f"{dist_info}/{n}" not in names]
        if missing:
            raise ArtifactError(f"{path}: the wheel lacks {', '.join(missing)}")
        metadata = HeaderParser().parsestr(archive.read(f"{dist_info}/METADATA").decode())
        wheel = HeaderParser().parsestr(archive.read(f"{dist_info}/WHEEL").decode())
        try:
            migrations = from_members({n: archive.read(n) for n in names if n.endswith(".sql")})
        except MigrationError as exc:
            raise ArtifactError(f"{path}: {exc}") from exc
        entry_points = f"{dist_info}/entry_points.txt"
        scripts = _console_scripts(archive.read(entry_points).decode()) if entry_points in names else []
    name, version = metadata.get("Name"), metadata.get("Version")
    tags = wheel.get_all("Tag") or []
    if not name or not version or not tags:
        raise ArtifactError(f"{path}: the metadata lacks Name, Version or the WHEEL file a Tag")
    if not VERSION_RE.match(version):
        raise ArtifactError(f"{path}: version {version!r} is not a PEP 440 version")
    # One tag triple per wheel here (pure Python); compressed tag sets join each part with dots.
    pythons, abis, platforms = (sorted({tag.split("-")[i] for tag in tags}) for i in range(3))
    dist_name = re.sub(r"[-_.]+", "_", name).lower()
    filename = f"{dist_name}-{version}-{'.'.join(pythons)}-{'.'.join(abis)}-{'.'.join(platforms)}.whl"
    return {
        "name": name,
        "version": version,
        "filename": filename,
        "requires": metadata.get_all("Requires-Dist") or [],
        "entry_points": scripts,
        "migrations": migrations,
    }


def _console_scripts(text: str) -> list[str]:
    """The console script names of an entry_points.txt."""
    scripts, section = [], None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "console_scripts" and "=" in line:
            scripts.append(line.split("=", 1)[0].strip())
    return scripts


def describe(path: str, sha256: str | None = None, version: str | None = None) -> dict:
    """wheel_info plus the file's sha256, checked against the expected sha256 and version if given."""
    actual = sha256_of(path)
    if sha256 and sha256.lower() != actual:
        raise ArtifactError(f"checksum mismatch for {path}: sha256 is {actual}, app_release.sha256 says {sha256}")
    info = wheel_info(path)
    if version and version != info["version"]:
        raise ArtifactError(f"{path} carries version {info['version']}, app_release.version says {version}")
    info.update(sha256=actual, path=path)
    return info
