# Copyright: rehab-scale maintainers
# Apache License 2.0 (see LICENSE)
# The work is done by the action plugin of the same name, on the control node; this file documents it.

DOCUMENTATION = r"""
module: vault_check
short_description: Refuse unencrypted vault files in an inventory that is not the lab
version_added: 0.3.0
description:
  - Looks in each inventory directory's C(group_vars) and C(host_vars) for files named C(vault.yml),
    C(vault.yaml), C(vault) or kept under a C(vault/) directory, and fails, naming them, when one
    does not start with the ansible-vault header.
  - Runs on the control node (action plugin); the phase playbooks call it in their preflight.
options:
  inventory_dirs:
    description: The inventory directories (C(inventory_dir) of the hosts).
    type: list
    elements: path
    required: true
  allow_plaintext:
    description: Accept plaintext files (the throwaway lab, whose secrets are not secret).
    type: bool
    default: false
attributes:
  check_mode:
    support: full
author:
  - rehab-scale maintainers
"""

EXAMPLES = r"""
- name: Refuse a plaintext vault outside the lab
  rehab.scale.vault_check:
    inventory_dirs: "{{ ansible_play_hosts_all | map('extract', hostvars, 'inventory_dir') | unique | list }}"
    allow_plaintext: "{{ rehab_vault_plaintext_ok | default(false) }}"  # the lab's vault.yml sets it
  run_once: true
"""

RETURN = r"""
plaintext:
  description: The unencrypted vault files found.
  returned: always
  type: list
  elements: str
"""
