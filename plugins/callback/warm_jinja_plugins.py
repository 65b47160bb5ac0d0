# Copyright: rehab-scale maintainers
# Apache License 2.0 (see LICENSE)
"""Load the Jinja filter and test plugins once, in the controller, before Ansible forks its workers."""

DOCUMENTATION = r"""
name: warm_jinja_plugins
type: aggregate
short_description: Load the Jinja filter and test plugins once, before Ansible forks a worker per task
description:
  - Ansible runs each task for each host in a new worker process forked from the controller. A worker
    that templates a filter or a test of a collection resolves it by loading every filter (or test)
    file of that collection, and a worker that templates a builtin one loads Ansible's own files; the
    imports they pull in (netaddr, passlib, this collection's module_utils) are lost when the worker
    exits, so the next task loads them again.
  - This callback loads them once in the controller when the playbook starts. Workers are forked from
    it and inherit the loaded modules, so resolving a filter is a lookup. It changes no result, only
    where the loading happens (docs/benchmarks.md has the profile and the figures).
  - A plugin file that fails to load is reported as a warning and left to the workers, which report
    it as they would have without this callback.
  - Enable it in C(callbacks_enabled) (ansible.cfg does, so does the Molecule configuration).
options:
  collections:
    description:
      - The collections whose filter and test plugins are loaded. C(ansible.builtin) stands for
        Ansible's own (and Jinja's) filters and tests.
    type: list
    elements: str
    default: [ansible.builtin, ansible.utils, rehab.scale]
    ini:
      - section: callback_warm_jinja_plugins
        key: collections
    env:
      - name: REHAB_WARM_JINJA_COLLECTIONS
"""

import importlib.util
import time

from ansible.plugins.callback import CallbackBase
from ansible.plugins.loader import filter_loader, test_loader

# A name no collection defines: resolving it makes the loader go through every plugin file of the
# collection (that is how a collection's filter is found), which loads them all, and find nothing.
_NO_SUCH_PLUGIN = "rehab_warm_jinja_plugins_none"
# Ansible's own: the first unqualified lookup loads every builtin file (and Jinja's) at once.
_BUILTIN = {"filter": "to_json", "test": "version"}


def warm(collections, loaders=(filter_loader, test_loader)):
    """Load every filter and test plugin file of ``collections`` into this process. Returns the
    problems as sentences (a collection that is not installed, a file that fails to load)."""
    problems = []
    for loader in loaders:
        for collection in collections:
            name = _BUILTIN[loader.type] if collection == "ansible.builtin" else f"{collection}.{_NO_SUCH_PLUGIN}"
            try:
                if collection != "ansible.builtin" and not _has(collection, loader.type):
                    continue  # an installed collection without plugins of this type
                loader.get_with_context(name)
            except Exception as error:  # reported, never fatal: the workers load as they would without this
                problems.append(f"{loader.type} plugins of {collection} not preloaded: {error}")
    return problems


def _has(collection, plugin_type):
    """Whether the installed ``collection`` has plugins of ``plugin_type`` (raises when the
    collection itself is not installed)."""
    package = f"ansible_collections.{collection}"
    if importlib.util.find_spec(package) is None:
        raise ModuleNotFoundError(f"collection {collection} is not installed")
    return importlib.util.find_spec(f"{package}.plugins.{plugin_type}") is not None


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "rehab.scale.warm_jinja_plugins"
    CALLBACK_NEEDS_ENABLED = True

    def v2_playbook_on_start(self, playbook):
        started = time.monotonic()
        for problem in warm(self.get_option("collections")):
            self._display.warning(problem)
        self._display.vvv(f"warm_jinja_plugins: filter and test plugins loaded in {time.monotonic() - started:.2f} s")
