# Copyright: rehab-scale maintainers
# Apache License 2.0 (see LICENSE)
"""What a restore restores: the backup set and pgBackRest's options for a recovery target.

Pure functions over pgBackRest's ``info --output=json`` for one stanza, so the refusals (a time
before the oldest backup, an unknown restore point, a malformed LSN) are decided and tested here,
before any host changes.
"""

import datetime

from ansible_collections.rehab.scale.plugins.module_utils.pg_failover import FailoverInputError, lsn_to_int

TARGETS = ("latest", "time", "lsn", "name")


class RestorePlanError(ValueError):
    """A restore target that cannot be restored; the message names the value."""


def lsn_value(text):
    """'0/3000060' -> 50331744, through the collection's one LSN parser (pg_failover.lsn_to_int);
    only bare text is a target here (that parser also lets None, integers and padding through)."""
    try:
        if not isinstance(text, str) or text != text.strip():
            raise FailoverInputError(text)
        return lsn_to_int(text)
    except FailoverInputError:
        raise RestorePlanError(f"{text!r} is not an LSN (like 0/3000060)") from None


def parse_time(text):
    """An ISO 8601 time with its UTC offset -> aware datetime; a time without an offset is refused
    (the servers' and the on-call's clocks may be in different zones)."""
    try:
        moment = datetime.datetime.fromisoformat(str(text).strip())
    except ValueError:
        raise RestorePlanError(
            f"{text!r} is not a time pgBackRest can target (write it like 2026-11-28 14:05:00+00:00)"
        ) from None
    if moment.tzinfo is None:
        raise RestorePlanError(f"{text!r} has no UTC offset (write it like 2026-11-28 14:05:00+00:00)")
    return moment


def _stamp(epoch):
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).isoformat()


def good_backups(info):
    """The stanza's backups that completed without error, oldest first."""
    backups = [b for b in (info or {}).get("backup", []) if not b.get("error")]
    return sorted(backups, key=lambda b: b["timestamp"]["stop"])


def restore_plan(info, target="latest", value="", restore_points=None, now=None):
    """{set, type, stop, options, summary} for restoring ``info``'s stanza to ``target``/``value``.

    ``restore_points``: [{name, lsn, time}] recorded by the backup playbook. ``now``: epoch
    seconds (a time target later than it is refused). Raises RestorePlanError naming the value.
    """
    stanza = (info or {}).get("name", "?")
    if target not in TARGETS:
        raise RestorePlanError(f"restore target {target!r} is not one of {', '.join(TARGETS)}")
    backups = good_backups(info)
    if not backups:
        raise RestorePlanError(f"the repository holds no complete backup of stanza {stanza!r}: nothing to restore")
    oldest = backups[0]
    if target == "latest":
        chosen, options, what = backups[-1], [], "the end of the WAL archive (latest)"
    elif target == "time":
        moment = parse_time(value)
        epoch = moment.timestamp()
        if epoch < oldest["timestamp"]["stop"]:
            raise RestorePlanError(
                f"target time {value!r} is before the end of the oldest backup of {stanza!r} "
                f"({oldest['label']}, ended {_stamp(oldest['timestamp']['stop'])}): nothing can be restored to it"
            )
        if now is not None and epoch > now:
            raise RestorePlanError(f"target time {value!r} is in the future (now {_stamp(now)})")
        chosen = [b for b in backups if b["timestamp"]["stop"] <= epoch][-1]
        options = ["--type=time", f"--target={moment.isoformat(sep=' ')}", "--target-action=promote"]
        what = f"time {moment.isoformat(sep=' ')}"
    else:
        if target == "name":
            points = [p for p in restore_points or [] if p.get("name") == value]
            if not points:
                known = ", ".join(sorted(p.get("name", "?") for p in restore_points or [])) or "none"
                raise RestorePlanError(
                    f"restore point {value!r} is not recorded for stanza {stanza!r} (recorded: {known})"
                )
            lsn = points[-1]["lsn"]
            options = ["--type=name", f"--target={value}", "--target-action=promote"]
            what = f"restore point {value!r} (LSN {lsn})"
        else:
            lsn = value
            options = ["--type=lsn", f"--target={value}", "--target-action=promote"]
            what = f"LSN {value}"
        position = lsn_value(lsn)
        if position < lsn_value(oldest["lsn"]["stop"]):
            raise RestorePlanError(
                f"{what} is before the end of the oldest backup of {stanza!r} "
                f"({oldest['label']}, ended at LSN {oldest['lsn']['stop']}): nothing can be restored to it"
            )
        chosen = [b for b in backups if lsn_value(b["lsn"]["stop"]) <= position][-1]
    return {
        "set": chosen["label"],
        "type": chosen["type"],
        "stop": _stamp(chosen["timestamp"]["stop"]),
        "options": [f"--set={chosen['label']}", *options],
        "summary": (
            f"stanza {stanza}: {chosen['type']} backup {chosen['label']} "
            f"(ended {_stamp(chosen['timestamp']['stop'])}), then WAL up to {what}"
        ),
    }
