# Copyright: rehab-scale maintainers
# Apache License 2.0 (see LICENSE)
"""pgbackrest_restore_plan: the backup set and options of a restore (module_utils/pgbackrest_plan.py)."""

from ansible.errors import AnsibleFilterError

from ansible_collections.rehab.scale.plugins.module_utils.pgbackrest_plan import RestorePlanError, restore_plan


def pgbackrest_restore_plan(info, target="latest", value="", restore_points=None, now=None):
    try:
        return restore_plan(info, target, value, restore_points, None if now is None else float(now))
    except RestorePlanError as err:
        raise AnsibleFilterError(f"Restore refused, nothing was changed: {err}") from err


class FilterModule:
    def filters(self):
        return {"pgbackrest_restore_plan": pgbackrest_restore_plan}
