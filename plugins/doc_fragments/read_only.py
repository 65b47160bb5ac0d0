# Copyright: rehab-scale maintainers
# Apache License 2.0 (see LICENSE)
"""The attributes of modules that only read: check mode returns the same result, no diff."""


class ModuleDocFragment:
    DOCUMENTATION = r"""
attributes:
  check_mode:
    support: full
    details: Read-only; check mode returns the same result.
  diff_mode:
    support: none
"""
