# Copyright: rehab-scale maintainers
# Apache License 2.0 (see LICENSE)
"""Action plugin for rehab.scale.vault_check: runs on the control node, where the inventory is."""

from ansible.plugins.action import ActionBase

from ansible_collections.rehab.scale.plugins.module_utils.vault_files import plaintext_vault_files


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _, args = self.validate_argument_spec(
            argument_spec={
                "inventory_dirs": {"type": "list", "elements": "path", "required": True},
                "allow_plaintext": {"type": "bool", "default": False},
            }
        )
        found = plaintext_vault_files(args["inventory_dirs"])
        result.update(changed=False, plaintext=found)
        if found and not args["allow_plaintext"]:
            result["failed"] = True
            result["msg"] = (
                "Refused: unencrypted vault file(s) in an inventory that is not the throwaway lab: "
                + ", ".join(found)
                + ". Encrypt them (ansible-vault encrypt FILE) before running; they hold the secrets."
            )
        else:
            result["msg"] = f"{len(found)} plaintext vault file(s); allowed in the lab" if found else "vaults encrypted"
        return result
