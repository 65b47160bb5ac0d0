# Copyright: rehab-scale maintainers
# Apache License 2.0 (see LICENSE)
"""PostgreSQL filters: pg_nodes (nodes as rehab.scale.pg_failover_check expects them), lsn_int,
pg_fence_outcome, pg_rejoin_plan, and pg_conninfo (a libpq multi-host connection string)."""

from ansible.errors import AnsibleFilterError

from ansible_collections.rehab.scale.plugins.module_utils.address import host_address
from ansible_collections.rehab.scale.plugins.module_utils.pg_failover import (
    FailoverInputError,
    fence_outcome,
    lsn_to_int,
    rejoin_plan,
)


def pg_nodes(names, hostvars, skip=None):
    """[{name, host, port, priority, skip}] for each inventory name, from its hostvars; ``skip``
    names nodes the probe must not connect to (confirmed dead).

    The address follows the one rule of module_utils/address.py (rehab.scale.host_address).
    """
    if isinstance(names, str) or not hasattr(names, "__iter__"):
        raise AnsibleFilterError(f"rehab.scale.pg_nodes: expected a list of inventory names, got {names!r}")
    nodes = []
    for name in names:
        try:
            host = hostvars[name]
        except KeyError:
            raise AnsibleFilterError(f"rehab.scale.pg_nodes: {name!r} is not in the inventory") from None
        nodes.append(
            {
                "name": name,
                "host": host_address(name, hostvars),
                "port": int(host.get("postgresql_port") or 5432),
                "priority": int(host.get("postgresql_failover_priority") or 100),
                "skip": name in (skip or []),
            }
        )
    return nodes


def lsn_int(value):
    """'0/3000060' -> 50331744, for comparing WAL positions in playbooks."""
    try:
        return lsn_to_int(value)
    except FailoverInputError as err:
        raise AnsibleFilterError(f"rehab.scale.lsn_int: {err}") from err


def pg_fence_outcome(to_fence, hostvars, confirmed_dead=None):
    """Nodes to fence -> {fenced, confirmed_dead, unfenced, confirmations_unused}.

    A node is fenced when the fence step set its fact postgresql_fenced to true (a host that was
    unreachable never sets it); ``confirmed_dead`` is on-call's -e confirm_dead (list or "a,b").
    """
    if isinstance(to_fence, str) or not hasattr(to_fence, "__iter__"):
        raise AnsibleFilterError(f"rehab.scale.pg_fence_outcome: expected a list of inventory names, got {to_fence!r}")
    to_fence = list(to_fence)
    fenced = [name for name in to_fence if str(hostvars[name].get("postgresql_fenced", False)).lower() == "true"]
    return fence_outcome(to_fence, fenced, confirmed_dead)


def pg_rejoin_plan(probe, node, local_timeline=None):
    """The probe's result (rehab.scale.pg_failover_check) -> {source, problems} for rewinding ``node``."""
    try:
        nodes = probe["nodes"]
    except (TypeError, KeyError):
        raise AnsibleFilterError(
            "rehab.scale.pg_rejoin_plan: expected the result of rehab.scale.pg_failover_check"
        ) from None
    timeline = None if local_timeline in (None, "") else int(local_timeline)
    return rejoin_plan(node, nodes, timeline)


def pg_conninfo(hosts, port, settings="", target_session_attrs=""):
    """['a', 'b'] | rehab.scale.pg_conninfo(5432, 'dbname=rehab', 'read-write') ->
    'host=a,b port=5432,5432 dbname=rehab target_session_attrs=read-write' (one port per host)."""
    if isinstance(hosts, str) or not isinstance(hosts, (list, tuple)):
        raise AnsibleFilterError(f"rehab.scale.pg_conninfo: expected a list of hosts, got {hosts!r}")
    parts = [
        f"host={','.join(map(str, hosts))}",
        f"port={','.join([str(port)] * len(hosts))}",
        " ".join(settings.split()),
    ]
    if target_session_attrs:
        parts.append(f"target_session_attrs={target_session_attrs}")
    return " ".join(part for part in parts if part)


class FilterModule:
    def filters(self):
        return {
            "pg_nodes": pg_nodes,
            "lsn_int": lsn_int,
            "pg_fence_outcome": pg_fence_outcome,
            "pg_rejoin_plan": pg_rejoin_plan,
            "pg_conninfo": pg_conninfo,
        }
