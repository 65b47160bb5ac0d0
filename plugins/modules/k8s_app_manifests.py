#!/usr/bin/python
# Copyright: rehab-scale maintainers
# Apache License 2.0 (see LICENSE)

DOCUMENTATION = r"""
module: k8s_app_manifests
short_description: Build the rehab-agi objects for Kubernetes and check them offline against its schema
version_added: 0.5.0
description:
  - Builds the ConfigMap, Secret (keys only), Service, Deployment, HorizontalPodAutoscaler,
    PodDisruptionBudget and Ingress of rehab-agi from the rehab.scale.k8s_app role's settings, whose
    defaults are the scaling guide's (3 replicas, RollingUpdate maxSurge 1 / maxUnavailable 0,
    requests 250m/256Mi, limits 500m/512Mi, liveness C(/api/agi/health) 30 s/10 s,
    readiness C(/api/agi/health/ready) 5 s/5 s, port 5001, autoscaling/v2 3-10 replicas at 70 % average CPU).
  - Refuses settings that break those promises (min above max, a request above its limit, a rollout
    that can make no progress, ...) with the bad value named, then validates every object strictly
    (unknown fields fail) against the JSON schema of the given Kubernetes release with
    kubernetes-validate, offline.
  - The Secret carries placeholder values; the caller fills C(stringData) from the vault in a task
    that logs nothing.
  - Pure computation; C(changed) is always false.
options:
  kubernetes_version:
    description: Kubernetes release whose schema the objects are checked against (the one the pinned k3s runs).
    type: str
    required: true
  image:
    description: The app's image reference (the release image, e.g. C(rehab-agi:1.0.0)).
    type: str
    required: true
  name:
    description: Name of every object.
    type: str
    required: true
  namespace:
    description: Namespace of every object.
    type: str
    required: true
  replicas:
    description: Replicas before the autoscaler acts.
    type: int
    required: true
  max_surge:
    description: Rolling update's maxSurge.
    type: int
    required: true
  max_unavailable:
    description: Rolling update's maxUnavailable.
    type: int
    required: true
  port:
    description: Port the app listens on in the pod (and the Service's port).
    type: int
    required: true
  requests:
    description: Container resource requests (C(cpu), C(memory)).
    type: dict
    required: true
  limits:
    description: Container resource limits (C(cpu), C(memory)).
    type: dict
    required: true
  liveness:
    description: Liveness probe (C(path), C(initial_delay), C(period) in seconds).
    type: dict
    required: true
  readiness:
    description: Readiness probe (C(path), C(initial_delay), C(period) in seconds).
    type: dict
    required: true
  autoscaler:
    description: HorizontalPodAutoscaler (C(min), C(max) replicas, C(cpu_percent) average utilisation).
    type: dict
    required: true
  disruption_max_unavailable:
    description: PodDisruptionBudget's maxUnavailable (below the autoscaler's min).
    type: int
    required: true
  ingress_class:
    description: IngressClass (k3s ships Traefik).
    type: str
    required: true
  ingress_host:
    description: Host the Ingress answers for; empty answers any host.
    type: str
    default: ""
  image_pull_policy:
    description: Image pull policy (IfNotPresent serves images imported on air-gapped nodes).
    type: str
    choices: [Always, IfNotPresent, Never]
    required: true
  run_as_user:
    description: Numeric user (and group) the container runs as; the release image's.
    type: int
    required: true
  env:
    description: Non-secret settings of the app (the ConfigMap, read as environment).
    type: dict
    default: {}
  secret_keys:
    description: Names of the secret settings (the Secret's keys, read as environment).
    type: list
    elements: str
    default: []
  shard_map:
    description:
      - The service's shard document, a C(shards) list with each shard's C(write_dsn) and a C(coordinator)
        (as the app servers' C(/etc/rehab-agi/shards.json)), mounted there when given; anything else is refused.
    type: raw
  ca_certificate:
    description:
      - The CA certificate (PEM) the service verifies the databases and Redis with; given, it goes into
        the ConfigMap C(<name>-ca), mounted at O(ca_path).
    type: str
    default: ""
  ca_path:
    description:
      - Where the service reads that CA (its settings name it), in a directory of its own.
    type: str
    default: ""
  monitoring:
    description:
      - Also build the objects that let a Prometheus outside the cluster read it (returned apart, in
        C(monitoring_manifests)) in C(kube-system) - the service account C(rehab-prometheus) with a
        long-lived token Secret, allowed to read the kubelets' metrics (C(nodes/metrics)) and
        kube-state-metrics through the API server's proxy to that one Service; and kube-state-metrics,
        watching pods, deployments, horizontal pod autoscalers and nodes only.
    type: bool
    default: false
  kube_state_metrics_image:
    description: The pinned kube-state-metrics image, with its tag (required with O(monitoring)).
    type: str
    default: ""
extends_documentation_fragment:
  - rehab.scale.read_only
author:
  - rehab-scale maintainers
"""

EXAMPLES = r"""
- name: Build and check the app's objects
  rehab.scale.k8s_app_manifests:
    kubernetes_version: 1.34.1
    image: rehab-agi:1.0.0
    secret_keys: [REHAB_AGI_DB_PASSWORD]
  delegate_to: localhost
  register: app_objects
"""

RETURN = r"""
manifests:
  description: The objects, in apply order, each checked against the schema.
  returned: success
  type: list
  elements: dict
kinds:
  description: C(apiVersion) and C(kind) of every kind the app may own (what pruning looks through).
  returned: success
  type: list
  elements: dict
  sample: [{apiVersion: v1, kind: ConfigMap}]
label:
  description: Label selector of every object the app owns (C(rehab.scale/app=<name>)).
  returned: success
  type: str
  sample: rehab.scale/app=rehab-agi
monitoring_manifests:
  description:
    - The cluster monitoring objects, in apply order, each checked against the schema (empty without
      O(monitoring)). They carry the label C(rehab.scale/app=<name>-monitoring).
  returned: success
  type: list
  elements: dict
kube_state_metrics_path:
  description: The path, on the API server, of kube-state-metrics' metrics (the API server's proxy to its Service).
  returned: success
  type: str
  sample: /api/v1/namespaces/kube-system/services/kube-state-metrics:http-metrics/proxy/metrics
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.rehab.scale.plugins.module_utils.k8s_manifests import (
    APP_LABEL,
    KINDS,
    OPTIONAL,
    REQUIRED,
    ManifestError,
    app_manifests,
    kube_state_metrics_path,
    monitoring_manifests,
    validate,
)

try:
    import kubernetes_validate  # noqa: F401
except ImportError:
    HAS_VALIDATOR = False
else:
    HAS_VALIDATOR = True

# The settings module_utils/k8s_manifests.py builds from: its REQUIRED ones and its OPTIONAL ones
# (tests/unit/plugins/modules/test_k8s_app_manifests.py keeps this spec, the documentation and those
# lists the same).
SETTINGS = [*REQUIRED, *OPTIONAL]
ARGUMENT_SPEC = {
    "kubernetes_version": {"type": "str", "required": True},
    "image": {"type": "str", "required": True},
    "name": {"type": "str", "required": True},
    "namespace": {"type": "str", "required": True},
    "replicas": {"type": "int", "required": True},
    "max_surge": {"type": "int", "required": True},
    "max_unavailable": {"type": "int", "required": True},
    "port": {"type": "int", "required": True},
    "requests": {"type": "dict", "required": True},
    "limits": {"type": "dict", "required": True},
    "liveness": {"type": "dict", "required": True},
    "readiness": {"type": "dict", "required": True},
    "autoscaler": {"type": "dict", "required": True},
    "disruption_max_unavailable": {"type": "int", "required": True},
    "ingress_class": {"type": "str", "required": True},
    "ingress_host": {"type": "str", "default": ""},
    "image_pull_policy": {"type": "str", "required": True, "choices": ["Always", "IfNotPresent", "Never"]},
    "run_as_user": {"type": "int", "required": True},
    "env": {"type": "dict", "default": {}},
    "secret_keys": {"type": "list", "elements": "str", "default": [], "no_log": False},
    "shard_map": {"type": "raw"},
    "ca_certificate": {"type": "str", "default": ""},
    "ca_path": {"type": "str", "default": ""},
    "monitoring": {"type": "bool", "default": False},
    "kube_state_metrics_image": {"type": "str", "default": ""},
}


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        required_if=[("monitoring", True, ["kube_state_metrics_image"])],
        supports_check_mode=True,
    )
    if not HAS_VALIDATOR:
        module.fail_json(msg="kubernetes-validate is needed on the control node (pip install kubernetes-validate)")
    # Read-only in both modes: check mode builds and checks the same objects.
    settings = {key: module.params[key] for key in SETTINGS}
    try:
        manifests = app_manifests(settings)
        monitoring = []
        if module.params["monitoring"]:
            monitoring = monitoring_manifests(module.params["kube_state_metrics_image"], settings["name"])
        validate(manifests + monitoring, module.params["kubernetes_version"])
    except ManifestError as err:
        module.fail_json(msg=f"rehab-agi objects refused: {err}")
    module.exit_json(
        changed=False,
        manifests=manifests,
        kinds=[{"apiVersion": api, "kind": kind} for api, kind in KINDS],
        label=f"{APP_LABEL}={settings['name']}",
        monitoring_manifests=monitoring,
        kube_state_metrics_path=kube_state_metrics_path(),
    )


if __name__ == "__main__":
    main()
