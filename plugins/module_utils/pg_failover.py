# Copyright: rehab-scale maintainers
# Apache License 2.0 (see LICENSE)
"""Failover decisions for a PostgreSQL primary with streaming replicas.

``decide()`` is pure: it takes what was observed on each node (see ``NodeState``) and returns which
node is primary, whether there is split brain, the ranked promotion candidates and whether
promoting the best one is safe, with one human-readable reason per rule that decided. Probing the
nodes (``probe()``) is separate, so the rules are unit tested without a database.

Rules
- split brain: more than one reachable node accepts writes -> unsafe, loudly, in every mode.
- failover: unsafe while any node still accepts writes (fence it, or use switchover).
- switchover: the primary must be reachable and the candidate fully caught up (lag 0).
- lag: unsafe when the best candidate's lag exceeds max_lag_bytes. Lag = WAL it has not received
  compared with the best known position (the primary's current LSN, else the highest LSN any
  reachable node received) plus WAL received but not yet replayed.
- synchronous (ANY k of n standbys): an acknowledged commit is flushed on at least k of the n sync
  standbys. Only when at least n - k + 1 of them are reachable is one of the reachable ones certain
  to hold every acknowledged commit; the highest received LSN among them is then the promotion
  target. With fewer reachable, promotion could lose acknowledged writes -> unsafe.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MODES = ("failover", "switchover")
_LSN = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")


class FailoverInputError(ValueError):
    """Invalid input to the decision (bad LSN, unknown mode, ...)."""


def lsn_to_int(lsn):
    """'16/B374D848' -> int; None stays None."""
    if lsn is None:
        return None
    if isinstance(lsn, int) and not isinstance(lsn, bool):
        return lsn
    match = _LSN.match(str(lsn).strip())
    if not match:
        raise FailoverInputError(f"{lsn!r} is not a PostgreSQL LSN (like 0/3000060)")
    return (int(match.group(1), 16) << 32) + int(match.group(2), 16)


def int_to_lsn(value):
    return None if value is None else f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


@dataclass
class NodeState:
    """What one probe saw. LSNs are ints (see lsn_to_int)."""

    name: str
    reachable: bool
    in_recovery: bool | None = None
    timeline: int | None = None
    current_lsn: int | None = None  # primary only: pg_current_wal_lsn()
    received_lsn: int | None = None  # replica: pg_last_wal_receive_lsn() (flushed)
    replayed_lsn: int | None = None  # replica: pg_last_wal_replay_lsn()
    replay_delay_seconds: float | None = None
    priority: int = 100
    error: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def role(self):
        if not self.reachable or self.in_recovery is None:
            return "unknown"
        return "replica" if self.in_recovery else "primary"

    @property
    def position(self):
        """Highest WAL position this node is known to hold."""
        return self.current_lsn if self.role == "primary" else self.received_lsn


def rank_key(node):
    """Sort key: highest received LSN first, then replayed LSN, then higher priority, then name."""
    return (-(node.received_lsn or 0), -(node.replayed_lsn or 0), -node.priority, node.name)


def _check_inputs(nodes, mode, max_lag_bytes, sync_standbys, sync_num):
    if mode not in MODES:
        raise FailoverInputError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if max_lag_bytes is None or max_lag_bytes < 0:
        raise FailoverInputError(f"max_lag_bytes must be >= 0, got {max_lag_bytes!r}")
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        raise FailoverInputError(f"node names must be unique, got {names}")
    unknown = sorted(set(sync_standbys) - set(names))
    if unknown:
        raise FailoverInputError(f"sync_standbys {unknown} are not among the nodes {names}")
    if sync_standbys and not 1 <= sync_num <= len(sync_standbys):
        raise FailoverInputError(f"sync_num {sync_num} must be between 1 and {len(sync_standbys)}")


def _primary_rules(nodes, primaries, mode):
    """Split brain and the per-mode rules about the current primary. Returns (safe, reasons)."""
    reasons = []
    unreachable = [n.name for n in nodes if not n.reachable]
    if unreachable:
        reasons.append(f"unreachable: {', '.join(unreachable)}")
    safe = True
    if len(primaries) > 1:
        safe = False
        reasons.append(
            "SPLIT BRAIN: "
            + ", ".join(f"{p.name} (timeline {p.timeline})" for p in primaries)
            + " all accept writes; promote nothing, fence all but one and reconcile first"
        )
    if mode == "failover" and len(primaries) == 1:
        safe = False
        reasons.append(
            f"{primaries[0].name} still accepts writes: failover refuses while a primary is reachable "
            "(stop and fence it, or run a switchover)"
        )
    if mode == "switchover" and not primaries:
        safe = False
        reasons.append("switchover needs a healthy primary and none is reachable (run a failover)")
    return safe, reasons


def _ranked(nodes, primaries):
    """Replicas in promotion order with their lag; and a description of the reference position."""
    if primaries:
        reference = max(p.current_lsn or 0 for p in primaries)
        reference_from = "the primary's current LSN"
    else:
        reference = max((n.position or 0 for n in nodes if n.reachable), default=0)
        reference_from = "the highest LSN any reachable node received"
    ranked = []
    for node in sorted((n for n in nodes if n.role == "replica"), key=rank_key):
        behind = max(reference - (node.received_lsn or 0), 0)
        backlog = max((node.received_lsn or 0) - (node.replayed_lsn or 0), 0)
        ranked.append(
            {
                "name": node.name,
                "received_lsn": int_to_lsn(node.received_lsn),
                "replayed_lsn": int_to_lsn(node.replayed_lsn),
                "timeline": node.timeline,
                "priority": node.priority,
                "lag_bytes": behind + backlog,
                "unreceived_bytes": behind,
                "unreplayed_bytes": backlog,
                "replay_delay_seconds": node.replay_delay_seconds,
            }
        )
    return ranked, reference_from


def _candidate_rules(ranked, reference_from, mode, has_primary, max_lag_bytes):
    if not ranked:
        return False, ["no reachable replica to promote"]
    best = ranked[0]
    safe = True
    reasons = [
        f"best candidate {best['name']}: received {best['received_lsn']}, replayed {best['replayed_lsn']}, "
        f"lag {best['lag_bytes']} bytes behind {reference_from}"
    ]
    if best["lag_bytes"] > max_lag_bytes:
        safe = False
        reasons.append(f"{best['name']} lags {best['lag_bytes']} bytes, past max_lag_bytes {max_lag_bytes}")
    if mode == "switchover" and has_primary and best["lag_bytes"] != 0:
        safe = False
        reasons.append(f"switchover needs {best['name']} fully caught up; it is {best['lag_bytes']} bytes behind")
    timelines = {c["timeline"] for c in ranked if c["timeline"] is not None}
    if len(timelines) > 1:
        reasons.append(f"replicas are on different timelines {sorted(timelines)}; the others will need pg_rewind")
    return safe, reasons


def _sync_rules(ranked, sync_standbys, sync_num):
    if not sync_standbys or not ranked:
        return True, []
    reachable_sync = [c for c in ranked if c["name"] in sync_standbys]
    needed = len(sync_standbys) - sync_num + 1
    if len(reachable_sync) < needed:
        return False, [
            f"synchronous ANY {sync_num} of {sync_standbys}: only {len(reachable_sync)} reachable, "
            f"{needed} needed to be sure one holds every acknowledged commit"
        ]
    # WAL positions on one timeline are totally ordered: the top-ranked candidate has flushed at
    # least as much as every reachable sync standby, so it holds every acknowledged commit.
    return True, [
        f"synchronous ANY {sync_num}: {len(reachable_sync)} of {len(sync_standbys)} sync standbys reachable; "
        f"{ranked[0]['name']} has the highest flushed LSN among them and holds every acknowledged commit"
    ]


def decide(nodes, mode="failover", max_lag_bytes=16 * 1024 * 1024, sync_standbys=None, sync_num=1):
    """Decide whether and whom to promote. Returns a plain dict (see the module's RETURN)."""
    sync_standbys = list(sync_standbys or [])
    _check_inputs(nodes, mode, max_lag_bytes, sync_standbys, sync_num)
    primaries = [n for n in nodes if n.role == "primary"]
    ranked, reference_from = _ranked(nodes, primaries)
    verdicts = [
        _primary_rules(nodes, primaries, mode),
        _candidate_rules(ranked, reference_from, mode, bool(primaries), max_lag_bytes),
        _sync_rules(ranked, sync_standbys, sync_num),
    ]
    safe = all(ok for ok, _ in verdicts)
    reasons = [reason for _, found in verdicts for reason in found]
    recommended = ranked[0]["name"] if ranked else None
    if safe:
        reasons.append(f"safe to promote {recommended} ({mode})")
    return {
        "primary": primaries[0].name if len(primaries) == 1 else None,
        "primaries": [p.name for p in primaries],
        "split_brain": len(primaries) > 1,
        "candidates": ranked,
        "recommended": recommended,
        "safe_to_promote": safe,
        "mode": mode,
        "reasons": reasons,
    }


PROBE_SQL = """
SELECT pg_is_in_recovery() AS in_recovery,
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END AS current_lsn,
       pg_last_wal_receive_lsn()::text AS received_lsn,
       pg_last_wal_replay_lsn()::text AS replayed_lsn,
       CASE WHEN pg_is_in_recovery()
            THEN COALESCE((SELECT received_tli FROM pg_stat_wal_receiver),
                          (SELECT timeline_id FROM pg_control_checkpoint()))
            ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int
       END AS timeline,
       EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8 AS replay_delay_seconds
"""


def probe(spec, connect, timeout=3):
    """Observe one node. ``connect(host=, port=, connect_timeout=)`` returns a DB-API connection.

    Any connection or query error makes the node unreachable (with the error), never an exception.
    """
    name = spec["name"]
    try:
        conn = connect(host=spec["host"], port=spec.get("port", 5432), connect_timeout=timeout)
    except Exception as exc:  # every driver error means "unreachable"
        return NodeState(name=name, reachable=False, priority=spec.get("priority", 100), error=_first_line(exc))
    try:
        with conn.cursor() as cur:
            cur.execute("SET statement_timeout = %s", (int(timeout * 1000),))
            cur.execute(PROBE_SQL)
            row = dict(zip([c[0] for c in cur.description], cur.fetchone(), strict=True))
    except Exception as exc:  # a failing query means the same
        return NodeState(name=name, reachable=False, priority=spec.get("priority", 100), error=_first_line(exc))
    finally:
        conn.close()
    received = lsn_to_int(row["received_lsn"])
    replayed = lsn_to_int(row["replayed_lsn"])
    return NodeState(
        name=name,
        reachable=True,
        in_recovery=bool(row["in_recovery"]),
        timeline=row["timeline"],
        current_lsn=lsn_to_int(row["current_lsn"]),
        # A standby whose WAL receiver never ran has replayed (from the archive or a base backup)
        # what it holds.
        received_lsn=received if received is not None else replayed,
        replayed_lsn=replayed,
        replay_delay_seconds=row["replay_delay_seconds"],
        priority=spec.get("priority", 100),
    )


def report(node):
    """A node as plain data for the module result."""
    return {
        "name": node.name,
        "reachable": node.reachable,
        "role": node.role,
        "timeline": node.timeline,
        "current_lsn": int_to_lsn(node.current_lsn),
        "received_lsn": int_to_lsn(node.received_lsn),
        "replayed_lsn": int_to_lsn(node.replayed_lsn),
        "replay_delay_seconds": node.replay_delay_seconds,
        "priority": node.priority,
        "error": node.error,
    }


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
