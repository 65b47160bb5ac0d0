# Copyright: rehab-scale maintainers
# Apache License 2.0 (see LICENSE)
"""Shard filters: shard_for (the shard holding a beneficiary ID), shard_group (a shard's inventory
group, by the one rule) and shard_endpoints (each shard with its hosts' addresses)."""

from ansible.errors import AnsibleFilterError

from ansible_collections.rehab.scale.plugins.module_utils.address import host_address
from ansible_collections.rehab.scale.plugins.module_utils.shard_map import ShardMapError, group_of, load

_DEFAULT = None


def shard_for(value, shards=None):
    """Return the name of the shard holding beneficiary ID ``value``."""
    global _DEFAULT  # noqa: PLW0603 - the guide's map is validated once per process
    try:
        if shards is None:
            if _DEFAULT is None:
                _DEFAULT = load()
            shard_map = _DEFAULT
        else:
            shard_map = load(shards)
        return shard_map.shard_for(value, "shard_for input")
    except ShardMapError as err:
        raise AnsibleFilterError(f"rehab.scale.shard_for: {err}") from err


def shard_group(value, kind):
    """'shard2' | rehab.scale.shard_group('postgresql') -> 'shard2_postgresql'; a list maps to a list."""
    try:
        if isinstance(value, (list, tuple)):
            return [group_of(item, kind) for item in value]
        return group_of(value, kind)
    except ShardMapError as err:
        raise AnsibleFilterError(f"rehab.scale.shard_group: {err}") from err


def shard_endpoints(shards, groups, hostvars, *, redis_port=6379, redis_cluster_port=7000, redis_cluster_min=3):
    """Each shard of ``shards`` with its endpoints, from the groups shard_group names and the one
    address rule: ``db_hosts`` (addresses of <name>_postgresql), ``db_cluster`` (that group),
    ``redis_nodes`` (host:port of <name>_redis: the cluster port when it has ``redis_cluster_min``
    hosts or more, which then form a Redis Cluster) and ``redis_cluster``."""
    if not isinstance(shards, (list, tuple)):
        raise AnsibleFilterError(f"rehab.scale.shard_endpoints: expected the shard map (a list), got {shards!r}")
    out = []
    try:
        for shard in shards:
            if not isinstance(shard, dict):
                raise ShardMapError(f"each shard must be a mapping, got {shard!r}")
            pg, rd = group_of(shard, "postgresql"), group_of(shard, "redis")
            redis_hosts = list(groups.get(rd) or [])
            cluster = len(redis_hosts) >= int(redis_cluster_min)
            port = redis_cluster_port if cluster else redis_port
            out.append({
                **shard,
                "db_hosts": [host_address(name, hostvars) for name in groups.get(pg) or []],
                "db_cluster": pg,
                "redis_nodes": [f"{host_address(name, hostvars)}:{port}" for name in redis_hosts],
                "redis_cluster": cluster,
            })  # fmt: skip
    except ShardMapError as err:
        raise AnsibleFilterError(f"rehab.scale.shard_endpoints: {err}") from err
    except KeyError as err:
        raise AnsibleFilterError(
            f"rehab.scale.shard_endpoints: {err} is in a shard group but not in the inventory"
        ) from err
    return out


class FilterModule:
    def filters(self):
        return {"shard_for": shard_for, "shard_group": shard_group, "shard_endpoints": shard_endpoints}
