# Copyright: rehab-scale maintainers
# Apache License 2.0 (see LICENSE)
# The work is done by the action plugin of the same name, on the control node; this file documents it.

DOCUMENTATION = r"""
module: release_artifact
short_description: Read a rehab-agi release (a Python wheel) on the control node and check it
version_added: 0.4.0
description:
  - Reads the wheel's own metadata (C(*.dist-info/METADATA) and C(WHEEL)) for its name, version and
    tags, so the version deployed is the one the code was built with, whatever the file is called.
  - Fails, naming the file and both values, when the sha256 or the version differs from the one
    given, and when the file is missing or is not a wheel.
  - Runs on the control node (action plugin); the app role calls it in its validate entry point.
options:
  src:
    description:
      - Path of the wheel on the control node. A relative path is looked up as copy's C(src) is
        (the role's C(files/), then the play's).
    type: str
    required: true
  sha256:
    description: Expected sha256 of the file (64 hex digits).
    type: str
  version:
    description: Expected version.
    type: str
attributes:
  check_mode:
    support: full
author:
  - rehab-scale maintainers
"""

EXAMPLES = r"""
- name: Read the release's version from its metadata
  rehab.scale.release_artifact:
    src: rehab-agi.whl
  register: release
"""

RETURN = r"""
name:
  description: Distribution name from the metadata.
  returned: success
  type: str
version:
  description: Version from the metadata.
  returned: success
  type: str
  sample: 1.0.0
filename:
  description: The canonical wheel file name (pip installs only wheels named so).
  returned: success
  type: str
  sample: rehab_agi-1.0.0-py3-none-any.whl
sha256:
  description: sha256 of the file.
  returned: success
  type: str
path:
  description: Absolute path of the file on the control node, links resolved.
  returned: success
  type: str
requires:
  description: The wheel's Requires-Dist entries.
  returned: success
  type: list
  elements: str
entry_points:
  description: Its console scripts.
  returned: success
  type: list
  elements: str
migrations:
  description:
    - The database migrations it carries, C(<package>/migrations/NNNN_<expand|contract>_<name>.sql),
      in id order, with their text, checksum and whether they run in a transaction (input of
      M(rehab.scale.pg_migrate)).
  returned: success
  type: list
  elements: dict
"""
