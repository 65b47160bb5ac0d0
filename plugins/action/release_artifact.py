# Copyright: rehab-scale maintainers
# Apache License 2.0 (see LICENSE)
"""Action plugin for rehab.scale.release_artifact: reads the release on the control node, where it is."""

import os

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase

from ansible_collections.rehab.scale.plugins.module_utils.release_artifact import ArtifactError, describe

MISSING_HINT = "make release builds the reference one"


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        _, args = self.validate_argument_spec(
            argument_spec={
                "src": {"type": "str", "required": True},
                "sha256": {"type": "str"},
                "version": {"type": "str"},
            }
        )
        src = args["src"]
        try:
            # A relative path is looked up like copy's src: the role's files/, then the play's.
            path = src if os.path.isabs(src) else self._find_needle("files", src)
        except AnsibleError:
            path = src
        if not os.path.isfile(path):
            result.update(failed=True, msg=f"release artifact {src} not found on the control node ({MISSING_HINT})")
            return result
        if args["sha256"] and len(args["sha256"]) != 64:
            result.update(failed=True, msg=f"app_release.sha256 {args['sha256']!r} is not a sha256 (64 hex digits)")
            return result
        try:
            info = describe(os.path.realpath(path), args["sha256"], args["version"])
        except ArtifactError as exc:
            result.update(failed=True, msg=f"release refused: {exc}")
            return result
        result.update(changed=False, **info)
        return result
