#!/usr/bin/python3
# Copyright: rehab-scale maintainers
# Apache License 2.0 (see LICENSE)
"""Print pgBackRest's view of a stanza and this node's WAL archiver as node-exporter text metrics.

Run by the pgbackrest-metrics timer as postgres on each PostgreSQL node; systemd puts the output in
the node exporter's textfile directory. A repository that does not answer gives
pgbackrest_repository_up 0 and no backup series (the alert rules read both).
"""

import argparse
import json
import subprocess
import sys

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
    if not found or found[0].get("status", {}).get("code") not in (0, 4):  # 4: a backup is running
        return None
    return found[0]


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


def number(value):
    """A sample value as the exposition format writes it: integers without a fraction."""
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def render(stanza, max_age, stanza_info, archive):
    lines = []

    def metric(name, kind, text, samples):
        lines.append(f"# HELP {name} {text}")
        lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            label_text = ",".join(f'{k}="{v}"' for k, v in {"stanza": stanza, **labels}.items())
            lines.append(f"{name}{{{label_text}}} {number(value)}")

    metric(
        "pgbackrest_repository_up",
        "gauge",
        "1 when pgbackrest info answered for the stanza.",
        [({}, int(stanza_info is not None))],
    )
    metric(
        "pgbackrest_backup_max_age_seconds", "gauge", "Age past which the newest backup is too old.", [({}, max_age)]
    )
    if stanza_info is not None:
        newest = {}
        for backup in stanza_info.get("backup", []):
            if backup.get("error"):
                continue
            stop = backup["timestamp"]["stop"]
            newest[backup["type"]] = max(newest.get(backup["type"], 0), stop)
        metric(
            "pgbackrest_backup_last_completed_timestamp_seconds",
            "gauge",
            "When the newest good backup of each type ended.",
            [({"type": kind}, stop) for kind, stop in sorted(newest.items())],
        )
        metric(
            "pgbackrest_backup_count", "gauge", "Backups in the repository.", [({}, len(stanza_info.get("backup", [])))]
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
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stanza", required=True)
    parser.add_argument("--max-age-seconds", type=int, required=True)
    args = parser.parse_args(argv)
    sys.stdout.write(render(args.stanza, args.max_age_seconds, info(args.stanza), archiver()))


if __name__ == "__main__":
    main()
