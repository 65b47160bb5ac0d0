"""rehab.scale.k8s_app_manifests: its argument spec, its documentation and the settings
module_utils/k8s_manifests.py builds from say the same (one list of settings, no drift)."""

import yaml

from ansible_collections.rehab.scale.plugins.module_utils.k8s_manifests import OPTIONAL, REQUIRED
from ansible_collections.rehab.scale.plugins.modules import k8s_app_manifests as module

DOCUMENTED = yaml.safe_load(module.DOCUMENTATION)["options"]
# Not the app's settings: the schema's release, and the cluster monitoring objects.
VALIDATION_ONLY = {"kubernetes_version", "monitoring", "kube_state_metrics_image"}


def test_the_spec_takes_every_setting_the_builder_reads_and_nothing_else():
    assert set(module.ARGUMENT_SPEC) == set(REQUIRED) | set(OPTIONAL) | VALIDATION_ONLY
    assert [*REQUIRED, *OPTIONAL] == module.SETTINGS


def test_required_in_the_spec_is_required_by_the_builder():
    required = {name for name, option in module.ARGUMENT_SPEC.items() if option.get("required")}
    assert required == set(REQUIRED) | {"kubernetes_version"}


def test_optional_defaults_are_the_builders():
    for name, empty in OPTIONAL.items():
        assert module.ARGUMENT_SPEC[name].get("default") == empty, name


def test_the_documentation_matches_the_spec():
    assert set(DOCUMENTED) == set(module.ARGUMENT_SPEC)
    for name, option in module.ARGUMENT_SPEC.items():
        documented = DOCUMENTED[name]
        assert documented.get("type", "str") == option["type"], name
        assert bool(documented.get("required")) == bool(option.get("required")), name
        assert documented.get("default") == option.get("default"), name
        assert documented.get("choices") == option.get("choices"), name
