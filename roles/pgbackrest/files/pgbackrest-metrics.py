#!/usr/bin/python3
# Copyright: rehab-scale maintainers
# Apache License 2.0 (see LICENSE)
"""Print pgBackRest's view of a stanza and this node's WAL archiver as node-exporter text metrics.

Run by the pgbackrest-metrics timer as postgres on each PostgreSQL node; systemd puts the output in
the node exporter's textfile directory. Series about the repositories carry a ``repo`` label (1, the
repository host's; 2, S3), so a stale or unreachable one is not hidden by the other. A repository
that does not answer gives pgbackrest_repository_up 0 and no backup series (the alert rules read
both).
"""

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

ARCHIVER = (
    "SELECT pg_is_in_recovery()::int, archived_count, failed_count,"
    " coalesce(extract(epoch FROM last_archived_time), 0), coalesce(extract(epoch FROM last_failed_time), 0)"
    " FROM pg_stat_archiver"
)


def info(stanza):
    """pgbackrest info for ``stanza`` as parsed JSON, or None when the repository did not answer."""
    try:
        out = subprocess.run(  # noqa: S603 - fixed argv
            ["/usr/bin/pgbackrest", f"--stanza={stanza}", "--output=json", "info"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        stanzas = json.loads(out)
    except (subprocess.SubprocessError, ValueError):
        return None
    found = [s for s in stanzas if s.get("name") == stanza]
    return found[0] if found else None


def readable_repos(stanza_info):
    """The keys of the repositories that answered: per-repository status 0 (ok) or 2 (no backup yet)."""
    if stanza_info is None:
        return set()
    return {repo["key"] for repo in stanza_info.get("repo", []) if repo.get("status", {}).get("code") in (0, 2)}


def archiver():
    """(in_recovery, archived_count, failed_count, last_archived, last_failed) or None."""
    try:
        out = subprocess.run(  # noqa: S603 - fixed argv
            ["/usr/bin/psql", "-XAtq", "-F", " ", "-d", "postgres", "-c", ARCHIVER],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.split()
        return [float(v) for v in out]
    except (subprocess.SubprocessError, ValueError):
        return None


STAMP = re.compile(r"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})")


def dropped(log):
    """(times WAL was dropped past the queue bound, when it last was) from the async push log.

    A drop whose line carries no readable time still counts, and is dated by the log's last write:
    never 0 ("never dropped"), which would clear the alert while the archive has a gap."""
    count, last = 0, 0.0
    try:
        path = Path(log)
        lines = path.read_text(errors="replace").splitlines()
        written = path.stat().st_mtime
    except OSError:
        return count, last
    for line in lines:
        if "dropped" in line and "WARN" in line:
            count += 1
            stamp = STAMP.search(line)  # "2026-11-28 08:48:45.123 P00   WARN: ...", in the host's local time
            try:
                last = max(last, time.mktime(time.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S")))
            except (AttributeError, ValueError, OverflowError):
                last = max(last, written)
    return count, last


def number(value):
    """A sample value as the exposition format writes it: integers without a fraction."""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def render(stanza, max_ages, stanza_info, archive, drops=(0, 0.0)):
    """The metrics text; ``max_ages`` maps each configured repository's key to its max backup age (s)."""
    lines = []

    def metric(name, kind, text, samples):
        lines.append(f"# HELP {name} {text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            label_text = ",".join(f'{k}="{v}"' for k, v in {"stanza": stanza, **labels}.items())
            lines.append(f"{name}{{{label_text}}} {number(value)}")

    readable = readable_repos(stanza_info)
    metric(
        "pgbackrest_repository_up",
        "gauge",
        "1 when the repository answered pgbackrest info for the stanza.",
        [({"repo": key}, int(key in readable)) for key in sorted(max_ages)],
    )
    metric(
        "pgbackrest_backup_max_age_seconds",
        "gauge",
        "Age past which the repository's newest backup is too old.",
        [({"repo": key}, age) for key, age in sorted(max_ages.items())],
    )
    if readable:
        newest = {}
        for backup in stanza_info.get("backup", []):
            repo = backup.get("database", {}).get("repo-key", 1)
            if backup.get("error") or repo not in readable:
                continue
            key = (backup["type"], repo)
            newest[key] = max(newest.get(key, 0), backup["timestamp"]["stop"])
        metric(
            "pgbackrest_backup_last_completed_timestamp_seconds",
            "gauge",
            "When the newest good backup of each type ended, per repository.",
            [({"type": kind, "repo": repo}, stop) for (kind, repo), stop in sorted(newest.items())],
        )
        metric(
            "pgbackrest_backup_count",
            "gauge",
            "Backups in each repository.",
            [
                (
                    {"repo": key},
                    sum(1 for b in stanza_info.get("backup", []) if b.get("database", {}).get("repo-key", 1) == key),
                )
                for key in sorted(readable)
            ],
        )
    if archive is not None:
        in_recovery, archived, failed, last_archived, last_failed = archive
        metric(
            "pgbackrest_node_primary",
            "gauge",
            "1 on the node that accepts writes (the one that archives).",
            [({}, 1 - in_recovery)],
        )
        metric(
            "pgbackrest_archive_archived_total",
            "counter",
            "WAL segments archived (pg_stat_archiver).",
            [({}, archived)],
        )
        metric(
            "pgbackrest_archive_failed_total", "counter", "Failed archive attempts (pg_stat_archiver).", [({}, failed)]
        )
        metric(
            "pgbackrest_archive_last_archived_timestamp_seconds",
            "gauge",
            "Last WAL segment archived.",
            [({}, last_archived)],
        )
        metric(
            "pgbackrest_archive_last_failed_timestamp_seconds",
            "gauge",
            "Last failed archive attempt.",
            [({}, last_failed)],
        )
    metric(
        "pgbackrest_archive_dropped_total",
        "counter",
        "WAL files dropped because the archive queue passed archive-push-queue-max (a gap in the archive).",
        [({}, drops[0])],
    )
    metric(
        "pgbackrest_archive_last_dropped_timestamp_seconds",
        "gauge",
        "When WAL was last dropped (0: never); restores cannot cross the gap until a newer full backup.",
        [({}, drops[1])],
    )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stanza", required=True)
    parser.add_argument("--log-path", default="/var/log/pgbackrest", help="pgBackRest's log directory")
    parser.add_argument(
        "--max-age",
        action="append",
        required=True,
        metavar="REPO=SECONDS",
        help="a configured repository and the age past which its newest backup is too old (repeated)",
    )
    args = parser.parse_args(argv)
    max_ages = {int(k): int(v) for k, v in (item.split("=", 1) for item in args.max_age)}
    drops = dropped(Path(args.log_path) / f"{args.stanza}-archive-push-async.log")
    sys.stdout.write(render(args.stanza, max_ages, info(args.stanza), archiver(), drops))


if __name__ == "__main__":
    main()
