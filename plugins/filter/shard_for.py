# Copyright: rehab-scale maintainers
# Apache License 2.0 (see LICENSE)
"""The shard_for filter: the name of the shard holding a beneficiary ID."""

from ansible.errors import AnsibleFilterError

from ansible_collections.rehab.scale.plugins.module_utils.shard_map import ShardMapError, load

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


class FilterModule:
    def filters(self):
        return {"shard_for": shard_for}
