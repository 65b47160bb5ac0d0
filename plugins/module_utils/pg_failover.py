# Copyright: rehab-scale maintainers
# Apache License 2.0 (see LICENSE)
"""The truth about a PostgreSQL cluster: who is primary, who may be promoted, who may start writable.

One implementation serves three callers:
- the ``pg_failover_check`` module (failover, switchover and rejoin decisions on the control node);
- the ``pg_nodes`` filter (LSN helpers);
- the start guard, which the postgresql role installs on every node next to this file and runs
  before PostgreSQL starts (``python3 pg_failover.py guard CONFIG``, see ``guard_main``). It uses
  only the standard library and psycopg2, so it runs on a node without Ansible.

``decide()`` and ``guard_decide()`` are pure: they take what was observed (``NodeState``) and
return a decision with one human-readable reason per rule that decided. Probing (``probe()``,
``probe_all()``) is separate, so the rules are unit tested without a database.

Rules of ``decide()``
- identity: only nodes with the cluster's system identifier count; others are "foreign".
- a node that answered but could not be classified (login refused, too many clients, a statement
  timeout) is alive with an unknown role: it may be a primary, so nothing is promoted.
- split brain: more than one node accepts writes -> unsafe, loudly, in every mode.
- failover: unsafe while any node accepts writes, and while any replica heard from its primary
  within ``heard_bound_seconds`` (the old primary is alive for someone even when the control node
  cannot reach it).
- failover: every replica must have replayed all the WAL it holds (its startup process waits for
  more) before positions are compared: a reconnecting WAL receiver reports the start of a segment,
  not what it holds (waits; a paused replay refuses).
- candidates rank by (timeline, received LSN, replayed LSN, priority, name); a replica whose last
  news from the primary (on the primary's clock) is older than the freshest survivor's by more than
  ``stale_bound_seconds`` and that holds less WAL is stale, never a candidate.
- switchover: the primary must be reachable and the candidate fully caught up (lag 0).
- lag: unsafe when the best candidate's lag exceeds max_lag_bytes. Lag = WAL it has not received
  compared with the best known position plus WAL received but not yet replayed.
- synchronous (ANY k of n standbys), when no primary is reachable: only when at least n - k + 1 of
  them are reachable is one of them certain to hold every acknowledged commit.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

MODES = ("failover", "switchover")
_LSN = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")

# libpq's words when no server answered at all: the node is down (or cut off). Anything else a
# connection attempt or a query returns came from a live server.
_DOWN_PATTERNS = (
    "connection refused",
    "timeout expired",
    "timed out",
    "no route to host",
    "network is unreachable",
    "could not translate host name",
    "name or service not known",
    "temporary failure in name resolution",
    "host is down",
    "no such file or directory",  # a unix socket that is not there
)


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


def classify_error(text):
    """'down' when no server answered (refused, timeout, no route), else 'unknown' (alive)."""
    lowered = (text or "").lower()
    return "down" if any(pattern in lowered for pattern in _DOWN_PATTERNS) else "unknown"


@dataclass
class NodeState:
    """What one probe saw. LSNs are ints (see lsn_to_int).

    ``reachable``: the probe classified the node. Otherwise ``alive`` says whether a server
    answered at all (an error from the server) or nothing did (refused, timeout, no route).
    """

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
    alive: bool | None = None
    system_identifier: str | None = None
    # replica: seconds since its WAL receiver last heard from the upstream (its own clock), while
    # streaming; None when no receiver runs.
    heard_seconds_ago: float | None = None
    # replica: last news from the primary on the primary's clock (epoch seconds): the sender's
    # timestamp of the last message, else the commit time of the last replayed transaction.
    last_news_epoch: float | None = None
    # replica: its startup process waits for WAL, so it has replayed all it holds and replayed_lsn
    # is its real position (the receiver's LSN restarts at a segment start when it reconnects).
    replay_settled: bool | None = None
    replay_paused: bool | None = None
    extra: dict = field(default_factory=dict)

    @property
    def status(self):
        """'up' (classified), 'down' (no server answered) or 'unknown' (alive, role unknown)."""
        if self.reachable and self.in_recovery is not None:
            return "up"
        if self.alive:
            return "unknown"
        return "down"

    @property
    def role(self):
        if self.status != "up":
            return "unknown"
        return "replica" if self.in_recovery else "primary"

    @property
    def position(self):
        """Highest WAL position this node is known to hold."""
        return self.current_lsn if self.role == "primary" else self.received_lsn


def rank_key(node):
    """Sort key: newest timeline, then received LSN, replayed LSN, higher priority, name."""
    return (-(node.timeline or 0), -(node.received_lsn or 0), -(node.replayed_lsn or 0), -node.priority, node.name)


def _check_inputs(nodes, *, mode, max_lag_bytes, sync_standbys, sync_num, sync_members=()):
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
    if sync_standbys and sync_members:
        raise FailoverInputError("give sync_standbys or sync_members, not both")
    strangers = sorted(set(sync_members) - set(names))
    if strangers:
        raise FailoverInputError(f"sync_members {strangers} are not among the nodes {names}")
    if sync_members and not 1 <= sync_num <= len(sync_members) - 1:
        raise FailoverInputError(f"sync_num {sync_num} must be between 1 and {len(sync_members) - 1}")


def cluster_identity(nodes, system_identifier=None):
    """(identifier, members, foreign, reasons): which classified nodes belong to the cluster.

    With an expected identifier, nodes with another one are foreign. Without one, the identifier
    most classified nodes share decides; a tie cannot be decided and makes every node doubtful.
    Nodes that were not classified (down, unknown) are members: nothing says otherwise.
    """
    seen = [n for n in nodes if n.status == "up" and n.system_identifier is not None]
    reasons = []
    expected = None if system_identifier in (None, "") else str(system_identifier)
    if expected is None and seen:
        counts = Counter(n.system_identifier for n in seen).most_common()
        if len(counts) > 1 and counts[0][1] == counts[1][1]:
            listing = ", ".join(f"{n.name}={n.system_identifier}" for n in seen)
            return None, [], [], [f"IDENTITY UNCLEAR: the nodes disagree on the system identifier ({listing})"]
        expected = counts[0][0]
    foreign = [n for n in seen if n.system_identifier != expected] if expected else []
    for node in foreign:
        reasons.append(
            f"{node.name} belongs to another cluster (system identifier {node.system_identifier}, "
            f"this cluster's is {expected}); ignored"
        )
    members = [n for n in nodes if n not in foreign]
    return expected, members, foreign, reasons


def _primary_rules(nodes, primaries, mode, heard_bound_seconds):
    """Reachability, split brain, the per-mode rules about the current primary.

    Returns (safe, transient, reasons); transient: every blocker may pass by waiting.
    """
    reasons, lasting, passing = [], [], []  # blockers that stay / that may pass by waiting
    down = [n for n in nodes if n.status == "down"]
    if down:
        reasons.append("down: " + ", ".join(f"{n.name} ({n.error or 'no answer'})" for n in down))
    for node in (n for n in nodes if n.status == "unknown"):
        lasting.append(
            f"{node.name} is alive but could not be classified ({node.error}); it may accept writes: "
            "promote nothing until it is reachable as the monitoring role or confirmed down"
        )
    if len(primaries) > 1:
        lasting.append(
            "SPLIT BRAIN: "
            + ", ".join(f"{p.name} (timeline {p.timeline})" for p in primaries)
            + " all accept writes; promote nothing, fence all but one and reconcile first"
        )
    if mode == "failover" and len(primaries) == 1:
        lasting.append(
            f"{primaries[0].name} still accepts writes: failover refuses while a primary is reachable "
            "(stop and fence it, or run a switchover)"
        )
    if mode == "switchover" and not primaries:
        lasting.append("switchover needs a healthy primary and none is reachable (run a failover)")
    if mode == "failover" and not primaries:
        replicas = [n for n in nodes if n.role == "replica"]
        paused = [n.name for n in replicas if n.replay_paused]
        unsettled = [n for n in replicas if n.replay_settled is False and not n.replay_paused]
        heard = [
            n
            for n in replicas
            if heard_bound_seconds is not None
            and n.heard_seconds_ago is not None
            and n.heard_seconds_ago < heard_bound_seconds
        ]
        if paused:
            lasting.append(
                f"replay is paused on {', '.join(paused)}: its position is not known; run "
                "SELECT pg_wal_replay_resume() there, then fail over"
            )
        if unsettled:
            passing.append(
                "still replaying the WAL they hold (positions not final yet): "
                + ", ".join(f"{n.name} at {int_to_lsn(n.replayed_lsn)}" for n in unsettled)
            )
        if heard:
            passing.append(
                "the old primary is alive for its replicas: "
                + ", ".join(f"{n.name} heard from it {n.heard_seconds_ago:.1f} s ago" for n in heard)
                + f" (bound {heard_bound_seconds} s); the control node may just be cut off from it"
            )
    return not (lasting or passing), bool(passing) and not lasting, reasons + lasting + passing


def _stale(replicas, stale_bound_seconds):
    """Replicas whose last news from the primary is older than the freshest survivor's by more than
    the bound and that hold less WAL than the best: they stopped receiving long before the others."""
    known = [n.last_news_epoch for n in replicas if n.last_news_epoch is not None]
    if stale_bound_seconds is None or not known:
        return []
    freshest = max(known)
    best_received = max((n.received_lsn or 0) for n in replicas)
    return [
        n
        for n in replicas
        if n.last_news_epoch is not None
        and freshest - n.last_news_epoch > stale_bound_seconds
        and (n.received_lsn or 0) < best_received
    ]


def _ranked(nodes, primaries, stale):
    """Replicas in promotion order with their lag; and a description of the reference position."""
    if primaries:
        reference = max(p.current_lsn or 0 for p in primaries)
        reference_from = "the primary's current LSN"
    else:
        reference = max((n.position or 0 for n in nodes if n.status == "up"), default=0)
        reference_from = "the highest LSN any reachable node received"
    ranked = []
    for node in sorted((n for n in nodes if n.role == "replica" and n not in stale), key=rank_key):
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


def _candidate_rules(ranked, stale, reference_from, *, mode, has_primary, max_lag_bytes, target=None):
    """Returns (safe, transient, reasons, chosen); transient: only lag blocks (it may shrink)."""
    reasons = [
        f"{n.name} is stale: its last news from the primary is older than the freshest survivor's "
        "by more than the bound and it holds less WAL; not a candidate"
        for n in stale
    ]
    if not ranked:
        return False, False, [*reasons, "no reachable replica to promote"], None
    best = ranked[0]
    if target is not None:
        chosen = next((c for c in ranked if c["name"] == target), None)
        if chosen is None:
            return False, False, [*reasons, f"{target} is not a reachable, fresh replica of this cluster"], None
        if (chosen["timeline"], lsn_to_int(chosen["received_lsn"])) != (
            best["timeline"],
            lsn_to_int(best["received_lsn"]),
        ):
            reasons.append(f"{target} holds less WAL than {best['name']}; waiting for it to catch up")
            if mode == "failover":
                return False, False, reasons, chosen
        best = chosen
    safe = True
    reasons.append(
        f"best candidate {best['name']}: timeline {best['timeline']}, received {best['received_lsn']}, "
        f"replayed {best['replayed_lsn']}, lag {best['lag_bytes']} bytes behind {reference_from}"
    )
    if best["lag_bytes"] > max_lag_bytes:
        safe = False
        reasons.append(f"{best['name']} lags {best['lag_bytes']} bytes, past max_lag_bytes {max_lag_bytes}")
    if mode == "switchover" and has_primary and best["lag_bytes"] != 0:
        safe = False
        reasons.append(f"switchover needs {best['name']} fully caught up; it is {best['lag_bytes']} bytes behind")
    timelines = {c["timeline"] for c in ranked if c["timeline"] is not None}
    if len(timelines) > 1:
        behind = [c["name"] for c in ranked if c["timeline"] != best["timeline"]]
        reasons.append(
            f"replicas are on different timelines {sorted(timelines)}: {', '.join(behind)} behind "
            f"{best['name']}'s timeline {best['timeline']} will need pg_rewind"
        )
    return safe, not safe, reasons, best


def _sync_rules(ranked, sync_standbys, sync_num, has_primary, sync_members=()):
    """ANY k: is one reachable standby certain to hold every acknowledged commit?

    ``sync_standbys``: the standbys the lost primary waited for. ``sync_members``: every node
    named in synchronous_standby_names, the lost primary among them without saying which (the
    role lists all nodes, so any may be primary): its standbys are the n = members - 1 others.
    With a reachable primary (switchover) nothing is lost: the clean shutdown hands over all WAL.
    """
    if has_primary or not ranked or not (sync_standbys or sync_members):
        return True, []
    if sync_members:
        reachable_sync = [c for c in ranked if c["name"] in sync_members]
        total, listing = len(sync_members) - 1, f"the {len(sync_members) - 1} standbys of {list(sync_members)}"
    else:
        reachable_sync = [c for c in ranked if c["name"] in sync_standbys]
        total, listing = len(sync_standbys), str(sync_standbys)
    needed = total - sync_num + 1
    if len(reachable_sync) < needed:
        return False, [
            f"synchronous ANY {sync_num} of {listing}: only {len(reachable_sync)} reachable, "
            f"{needed} needed to be sure one holds every acknowledged commit"
        ]
    # WAL positions on one timeline are totally ordered: the top-ranked candidate has flushed at
    # least as much as every reachable sync standby, so it holds every acknowledged commit.
    return True, [
        f"synchronous ANY {sync_num}: {len(reachable_sync)} of {total} sync standbys reachable; "
        f"{ranked[0]['name']} has the highest flushed LSN among them and holds every acknowledged commit"
    ]


def decide(
    nodes,
    *,
    mode="failover",
    max_lag_bytes=16 * 1024 * 1024,
    sync_standbys=None,
    sync_num=1,
    sync_members=None,
    heard_bound_seconds=None,
    stale_bound_seconds=None,
    system_identifier=None,
    target=None,
):
    """Decide whether and whom to promote (``target``: only that replica). Returns a plain dict
    (see the module's RETURN)."""
    sync_standbys, sync_members = list(sync_standbys or []), list(sync_members or [])
    _check_inputs(
        nodes,
        mode=mode,
        max_lag_bytes=max_lag_bytes,
        sync_standbys=sync_standbys,
        sync_num=sync_num,
        sync_members=sync_members,
    )
    identifier, members, foreign, identity_reasons = cluster_identity(nodes, system_identifier)
    identity_ok = bool(members) or not nodes
    primaries = [n for n in members if n.role == "primary"]
    replicas = [n for n in members if n.role == "replica"]
    stale = _stale(replicas, stale_bound_seconds)
    ranked, reference_from = _ranked(members, primaries, stale)
    primary_safe, primary_transient, primary_reasons = _primary_rules(members, primaries, mode, heard_bound_seconds)
    candidate_safe, candidate_transient, candidate_reasons, chosen = _candidate_rules(
        ranked,
        stale,
        reference_from,
        mode=mode,
        has_primary=bool(primaries),
        max_lag_bytes=max_lag_bytes,
        target=target,
    )
    sync_safe, sync_reasons = _sync_rules(ranked, sync_standbys, sync_num, bool(primaries), sync_members)
    # (safe, transient: waiting may make it safe, reasons)
    verdicts = [
        (identity_ok, False, identity_reasons),
        (primary_safe, primary_transient, primary_reasons),
        (candidate_safe, candidate_transient, candidate_reasons),
        (sync_safe, False, sync_reasons),
    ]
    safe = all(ok for ok, _, _ in verdicts)
    reasons = [reason for _, _, found in verdicts for reason in found]
    recommended = chosen["name"] if chosen else None
    if safe:
        reasons.append(f"safe to promote {recommended} ({mode})")
    return {
        "primary": primaries[0].name if len(primaries) == 1 else None,
        "primaries": [p.name for p in primaries],
        "split_brain": len(primaries) > 1,
        "candidates": [chosen, *[c for c in ranked if c is not chosen]] if chosen else ranked,
        "recommended": recommended,
        "safe_to_promote": safe,
        "mode": mode,
        "reasons": reasons,
        "system_identifier": identifier,
        "foreign": [n.name for n in foreign],
        "stale": [n.name for n in stale],
        "down": [n.name for n in members if n.status == "down"],
        "unknown": [n.name for n in members if n.status == "unknown"],
        "waiting_may_help": (not safe) and all(ok or transient for ok, transient, _ in verdicts),
    }


PROBE_SQL = """
SELECT pg_is_in_recovery() AS in_recovery,
       (SELECT system_identifier::text FROM pg_control_system()) AS system_identifier,
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END AS current_lsn,
       pg_last_wal_receive_lsn()::text AS received_lsn,
       pg_last_wal_replay_lsn()::text AS replayed_lsn,
       CASE WHEN pg_is_in_recovery()
            -- the newest timeline it holds WAL of: the receiver's, the last restartpoint's, or a
            -- WAL segment's name (the first two lag after a receiver restart or a timeline switch)
            THEN GREATEST((SELECT received_tli FROM pg_stat_wal_receiver),
                          (SELECT timeline_id FROM pg_control_checkpoint()),
                          (SELECT max(('x' || substr(name, 1, 8))::bit(32)::int) FROM pg_ls_waldir()
                            WHERE name ~ '^[0-9A-F]{24}$'))
            ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int
       END AS timeline,
       CASE WHEN pg_is_in_recovery()
            THEN (SELECT wait_event IN ('RecoveryWalStream', 'RecoveryRetrieveRetryInterval')
                    FROM pg_stat_activity WHERE backend_type = 'startup')
       END AS replay_settled,
       CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() <> 'not paused' END AS replay_paused,
       EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8 AS replay_delay_seconds,
       (SELECT EXTRACT(EPOCH FROM now() - last_msg_receipt_time)::float8 FROM pg_stat_wal_receiver
         WHERE status = 'streaming') AS heard_seconds_ago,
       EXTRACT(EPOCH FROM GREATEST((SELECT last_msg_send_time FROM pg_stat_wal_receiver),
                                   pg_last_xact_replay_timestamp()))::float8 AS last_news_epoch
"""


def probe(spec, connect, timeout=2):
    """Observe one node. ``connect(host=, port=, connect_timeout=)`` returns a DB-API connection.

    Never raises: a failed connection or query gives an unclassified node with the error, marked
    alive when a server produced the error (see classify_error).
    """
    name, priority = spec["name"], spec.get("priority", 100)
    if spec.get("skip"):
        return NodeState(name=name, reachable=False, priority=priority, alive=False, error="not probed: confirmed dead")
    try:
        conn = connect(host=spec["host"], port=spec.get("port", 5432), connect_timeout=timeout)
    except Exception as exc:  # every driver error is classified by its text
        error = _first_line(exc)
        return NodeState(
            name=name, reachable=False, priority=priority, error=error, alive=classify_error(error) != "down"
        )
    try:
        with conn.cursor() as cur:
            cur.execute("SET statement_timeout = %s", (int(timeout * 1000),))
            cur.execute(PROBE_SQL)
            row = dict(zip([c[0] for c in cur.description], cur.fetchone(), strict=True))
    except Exception as exc:  # the server answered, then failed: alive, role unknown
        return NodeState(name=name, reachable=False, priority=priority, error=_first_line(exc), alive=True)
    finally:
        conn.close()
    received = lsn_to_int(row["received_lsn"])
    replayed = lsn_to_int(row["replayed_lsn"])
    return NodeState(
        name=name,
        reachable=True,
        alive=True,
        in_recovery=bool(row["in_recovery"]),
        system_identifier=row["system_identifier"],
        timeline=row["timeline"],
        current_lsn=lsn_to_int(row["current_lsn"]),
        # A standby has received at least what it replayed: one whose WAL receiver never ran (or
        # that restarted streaming at a segment start, as after pg_rewind) reports less.
        received_lsn=max((x for x in (received, replayed) if x is not None), default=None),
        replayed_lsn=replayed,
        replay_delay_seconds=row["replay_delay_seconds"],
        heard_seconds_ago=row["heard_seconds_ago"],
        last_news_epoch=row["last_news_epoch"],
        replay_settled=row.get("replay_settled"),
        replay_paused=row.get("replay_paused"),
        priority=priority,
    )


def psycopg2_connector(psycopg2, **fixed):
    """connect(host=, port=, connect_timeout=) for probe(): psycopg2 with the fixed login settings
    (dbname, user, password or passfile, application_name, sslmode, sslrootcert), autocommit on.
    Settings given as None are left to libpq's defaults."""
    fixed = {key: value for key, value in fixed.items() if value is not None}

    def connect(host, port, connect_timeout):
        conn = psycopg2.connect(host=host, port=port, connect_timeout=connect_timeout, **fixed)
        conn.autocommit = True
        return conn

    return connect


def probe_all(specs, connect, timeout=2):
    """Probe every node at once: a dead node costs one connect timeout, not one per node."""
    if not specs:
        return []
    with ThreadPoolExecutor(max_workers=len(specs)) as pool:
        return list(pool.map(lambda spec: probe(spec, connect, timeout), specs))


def report(node):
    """A node as plain data for the module result."""
    return {
        "name": node.name,
        "reachable": node.reachable,
        "status": node.status,
        "role": node.role,
        "system_identifier": node.system_identifier,
        "timeline": node.timeline,
        "current_lsn": int_to_lsn(node.current_lsn),
        "received_lsn": int_to_lsn(node.received_lsn),
        "replayed_lsn": int_to_lsn(node.replayed_lsn),
        "replay_delay_seconds": node.replay_delay_seconds,
        "heard_seconds_ago": node.heard_seconds_ago,
        "replay_settled": node.replay_settled,
        "replay_paused": node.replay_paused,
        "priority": node.priority,
        "error": node.error,
    }


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --- Fencing ------------------------------------------------------------------------------------


def names_list(value):
    """'pg1, pg2' or ['pg1', 'pg2'] or None -> ['pg1', 'pg2'] (on-call's -e confirm_dead=...)."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [str(item).strip() for item in items if str(item).strip()]


def fence_outcome(to_fence, fenced, confirmed_dead):
    """Which nodes to fence are fenced, which on-call confirmed dead instead, and which are neither
    (those stop a failover before it promotes). A node both fenced and confirmed counts as fenced;
    a confirmation of a node that was not to be fenced is reported, never used."""
    fenced = [n for n in to_fence if n in set(fenced)]
    confirmed = names_list(confirmed_dead)
    return {
        "fenced": fenced,
        "confirmed_dead": [n for n in to_fence if n in confirmed and n not in fenced],
        "unfenced": [n for n in to_fence if n not in fenced and n not in confirmed],
        "confirmations_unused": [n for n in confirmed if n not in to_fence],
    }


# --- Rejoin ---------------------------------------------------------------------------------------


def rejoin_plan(node, nodes, local_timeline=None):
    """May ``node`` be rewound onto the current primary? ``nodes``: the probe's report of every node
    (name, role, timeline); ``local_timeline``: the node's own timeline read on it (pg_controldata)
    when its PostgreSQL is down. Returns {"source": primary or None, "problems": [...]}."""
    by_name = {n["name"]: n for n in nodes}
    if node not in by_name:
        return {"source": None, "problems": [f"{node} is not a node of this cluster ({sorted(by_name)})"]}
    others = [n for n in nodes if n["role"] == "primary" and n["name"] != node]
    problems = []
    if len(others) != 1:
        problems.append(f"primaries among the other nodes: {[n['name'] for n in others]} (exactly one is needed)")
    if by_name[node]["role"] == "primary" and not others:
        problems.append(f"{node} is the only primary: rewinding it would discard the newest writes")
    mine = by_name[node]["timeline"] if by_name[node]["timeline"] is not None else local_timeline
    if len(others) == 1 and mine is not None and others[0]["timeline"] is not None and mine > others[0]["timeline"]:
        problems.append(
            f"{node} is on timeline {mine}, newer than {others[0]['name']}'s timeline {others[0]['timeline']}: "
            "it, not the primary, may hold the newest writes"
        )
    return {"source": others[0]["name"] if len(others) == 1 else None, "problems": problems}


# --- The start guard ---------------------------------------------------------------------------


def majority(members):
    """Smallest number of members that is more than half of them."""
    return members // 2 + 1


def guard_decide(own, peers):  # noqa: PLR0911 - one return per rule, in order
    """May this node start writable? ``own``: dict with system_identifier, timeline, standby (bool),
    fenced (reason or None), override (bool). ``peers``: NodeState of every other member.

    Returns {"start": bool, "sticky": bool, "reason": str}. ``sticky``: the refusal is about the
    cluster's history (another primary, a newer timeline), so it must hold until a rejoin even if
    those peers later become unreachable.
    """
    if own.get("override"):
        return {"start": True, "sticky": False, "reason": "on-call override: starts without the checks"}
    if own.get("fenced"):
        return {"start": False, "sticky": True, "reason": f"fenced: {own['fenced']}; rejoin it (playbooks/rejoin.yml)"}
    if own.get("standby"):
        return {"start": True, "sticky": False, "reason": "standby.signal present: starts read-only as a standby"}
    mine = str(own.get("system_identifier"))
    same = [p for p in peers if p.status == "up" and str(p.system_identifier) == mine]
    foreign = [p for p in peers if p.status == "up" and str(p.system_identifier) != mine]
    primaries = [p for p in same if p.role == "primary"]
    if primaries:
        listing = ", ".join(f"{p.name} (timeline {p.timeline})" for p in primaries)
        return {"start": False, "sticky": True, "reason": f"another node accepts writes: {listing}"}
    newer = [p for p in same if (p.timeline or 0) > (own.get("timeline") or 0)]
    if newer:
        listing = ", ".join(f"{p.name} (timeline {p.timeline})" for p in newer)
        return {
            "start": False,
            "sticky": True,
            "reason": f"a newer timeline than this node's {own.get('timeline')} exists: {listing} (a failover?)",
        }
    members = 1 + len(peers) - len(foreign)
    reached = 1 + len(same)
    needed = majority(members)
    if reached >= needed:
        return {
            "start": True,
            "sticky": False,
            "reason": f"reached {reached} of {members} members (majority {needed}), none primary or newer: writable",
        }
    missing = [f"{p.name} ({p.status}{': ' + p.error if p.error else ''})" for p in peers if p not in same + foreign]
    return {
        "start": False,
        "sticky": False,
        "reason": f"reached {reached} of {members} members, {needed} needed; not reached: {', '.join(missing)}",
    }


def parse_controldata(text):
    """The fields the guard needs from pg_controldata's output."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    return {
        "system_identifier": fields.get("Database system identifier"),
        "timeline": int(fields.get("Latest checkpoint's TimeLineID", "0") or 0),
        "state": fields.get("Database cluster state"),
    }


def read_fence(path):
    """The fence mark's reason, None when the node is not fenced. A mark without text (an on-call
    `touch`) still fences."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip() or "fenced"
    except FileNotFoundError:
        return None


def guard_main(config_path, connect=None, controldata=None, sleep=time.sleep, clock=time.monotonic):
    """Run before PostgreSQL starts. Exit status 0 lets it start, 1 keeps it down (and says why).

    Config (JSON, written by the postgresql role): name, data_dir, pg_controldata, peers
    [{name, host, port}], login_user, login_db, passfile, wait_seconds, connect_timeout,
    state_file, fence_file, override_file, and optionally sslmode and sslrootcert (libpq's).
    """
    with open(config_path, encoding="utf-8") as handle:
        config = json.load(handle)
    if controldata is None:
        import subprocess  # noqa: PLC0415 - only the guard runs commands

        def controldata():
            return subprocess.run(  # noqa: S603 - argv from the root-owned guard config
                [config["pg_controldata"], config["data_dir"]], capture_output=True, text=True, check=True
            ).stdout

    if connect is None:
        import psycopg2  # noqa: PLC0415 - the node has python3-psycopg2 (installed by the role)

        connect = psycopg2_connector(
            psycopg2,
            dbname=config.get("login_db", "postgres"),
            user=config["login_user"],
            passfile=config["passfile"],
            application_name="rehab-start-guard",
            sslmode=config.get("sslmode"),
            sslrootcert=config.get("sslrootcert"),
        )

    own = parse_controldata(controldata())
    own["standby"] = os.path.exists(os.path.join(config["data_dir"], "standby.signal"))
    own["fenced"] = read_fence(config["fence_file"])
    override_file = config["override_file"]
    own["override"] = os.path.exists(override_file)
    deadline = clock() + float(config.get("wait_seconds", 60))
    while True:
        peers = (
            []
            if own["override"] or own["fenced"] or own["standby"]
            else probe_all(config.get("peers", []), connect, config.get("connect_timeout", 2))
        )
        verdict = guard_decide(own, peers)
        if verdict["start"] or verdict["sticky"] or clock() >= deadline:
            break
        sleep(2)
    if own["override"]:
        os.remove(override_file)  # one start only
    if verdict["sticky"] and not own["fenced"]:
        with open(config["fence_file"], "w", encoding="utf-8") as handle:
            handle.write(f"start guard at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}: {verdict['reason']}\n")
    state = {
        "node": config.get("name"),
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "started": verdict["start"],
        "reason": verdict["reason"],
        "timeline": own["timeline"],
        "system_identifier": own["system_identifier"],
        "peers": [report(p) for p in peers],
    }
    with open(config["state_file"], "w", encoding="utf-8") as handle:
        json.dump(state, handle, indent=1)
    word = "START" if verdict["start"] else "REFUSED"
    print(f"rehab start guard: {word}: {verdict['reason']}", file=sys.stderr)
    return 0 if verdict["start"] else 1


# --- What a node really is, against what the inventory says ------------------------------------


def inventory_verdict(name, expected_role, state, primary_name=None):  # noqa: PLR0911 - one return per rule
    """(ok, message): may a phase run converge ``name`` as ``expected_role`` ('primary'/'replica')?

    ``state`` (from the pg_node_state module, read on the node itself): initialized, running,
    in_recovery, user_databases, standby_signal, fenced (reason or None), guard (last guard state
    or None), timeline. A fresh node (no data, or a running cluster without user databases that is
    not a standby) is never a contradiction: the role builds it.
    """
    primary_name = primary_name or "the node the inventory names"
    if not state.get("initialized"):
        return True, f"{name}: no cluster yet; the role creates it"
    if state.get("fenced"):
        return False, (
            f"{name} is fenced ({state['fenced']}). Nothing was changed. If it is a former primary, bring it "
            f"back with playbooks/rejoin.yml -e rejoin_host={name} and list it under pg_replicas"
        )
    running, recovery, databases = state.get("running"), state.get("in_recovery"), state.get("user_databases") or 0
    if running and not recovery and databases and expected_role == "replica":
        return False, (
            f"{name} accepts writes and holds {databases} database(s), but the inventory lists it under "
            f"pg_replicas (primary {primary_name}). Nothing was changed. It is the primary now (a failover?): "
            f"the inventory must list {name} under pg_primary and {primary_name} under pg_replicas; then "
            f"rejoin {primary_name} (playbooks/rejoin.yml -e rejoin_host={primary_name})"
        )
    if running and recovery and expected_role == "primary":
        return False, (
            f"{name} is a standby (timeline {state.get('timeline')}), but the inventory lists it under "
            "pg_primary. Nothing was changed. Find the primary (playbooks/failover.yml --check lists every "
            "node's role) and list it under pg_primary"
        )
    if not running and expected_role == "primary" and state.get("standby_signal"):
        return False, (
            f"{name} is stopped and marked a standby (standby.signal), but the inventory lists it under "
            "pg_primary. Nothing was changed. List the real primary under pg_primary"
        )
    guard = state.get("guard") or {}
    if not running and guard.get("started") is False:
        return False, (
            f"{name} is down: its start guard refused to start it ({guard.get('reason')}). Nothing was "
            "changed. Check the cluster with playbooks/failover.yml --check"
        )
    return True, f"{name}: consistent with the inventory ({expected_role})"


if __name__ == "__main__":  # pragma: no cover - run by systemd on the node
    if len(sys.argv) != 3 or sys.argv[1] != "guard":
        sys.exit("usage: pg_failover.py guard CONFIG.json")
    sys.exit(guard_main(sys.argv[2]))
