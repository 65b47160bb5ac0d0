# Copyright: rehab-scale maintainers
# Apache License 2.0 (see LICENSE)
"""The rehab-agi objects on Kubernetes, built from the k8s_app role's settings (its defaults are the
scaling guide's values), and checked offline against the schema of the Kubernetes release the
cluster runs.

One implementation behind the module rehab.scale.k8s_app_manifests (which the k8s_app role calls
before any apply) and the unit tests. Secret values never pass through here: the Secret is built
with its keys and placeholder values, and the role fills them in a task that logs nothing.
"""

from __future__ import annotations

import json
import re

# Settings every build needs (the role passes its variables; no second copy of the guide's values
# lives here) and the optional ones with their empty values.
REQUIRED = [
    "image",
    "name",
    "namespace",
    "replicas",
    "max_surge",
    "max_unavailable",
    "port",
    "requests",
    "limits",
    "liveness",
    "readiness",
    "autoscaler",
    "disruption_max_unavailable",
    "ingress_class",
    "image_pull_policy",
    "run_as_user",
]
OPTIONAL = {"ingress_host": "", "env": {}, "secret_keys": [], "shard_map": None, "ca_certificate": "", "ca_path": ""}
# Label every object carries: what the role prunes by.
APP_LABEL = "rehab.scale/app"
SHARD_MAP_PATH = "/etc/rehab-agi/shards.json"
SECRET_PLACEHOLDER = "set-by-the-role"  # noqa: S105 - a placeholder, never a secret
# Kinds the role manages in the namespace (it prunes objects of these kinds it no longer renders).
KINDS = [
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("policy/v1", "PodDisruptionBudget"),
    ("networking.k8s.io/v1", "Ingress"),
]

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CPU = re.compile(r"^([0-9]+)(m?)$|^([0-9]*[.][0-9]+)$")
_MEMORY = re.compile(r"^([0-9]+)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_MEMORY_UNITS = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
_MEMORY_UNITS.update({"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40})


class ManifestError(ValueError):
    """Bad settings or a manifest the schema refuses; the message names the value."""


def millicores(value: str) -> int:
    match = _CPU.match(str(value))
    if not match:
        raise ManifestError(f"cpu {value!r} is not a CPU quantity (e.g. 250m or 0.5)")
    if match.group(3):
        return round(float(match.group(3)) * 1000)
    return int(match.group(1)) * (1 if match.group(2) else 1000)


def memory_bytes(value: str) -> int:
    match = _MEMORY.match(str(value))
    if not match:
        raise ManifestError(f"memory {value!r} is not a memory quantity (e.g. 256Mi)")
    return int(match.group(1)) * _MEMORY_UNITS[match.group(2)]


def _integers(s: dict) -> list[str]:
    fields = {
        "replicas": s["replicas"],
        "max_surge": s["max_surge"],
        "max_unavailable": s["max_unavailable"],
        "port": s["port"],
        "disruption_max_unavailable": s["disruption_max_unavailable"],
        "run_as_user": s["run_as_user"],
        "autoscaler min": s["autoscaler"].get("min"),
        "autoscaler max": s["autoscaler"].get("max"),
        "autoscaler cpu_percent": s["autoscaler"].get("cpu_percent"),
    }
    for probe in ("liveness", "readiness"):
        fields[f"{probe} initial_delay"] = s[probe].get("initial_delay")
        fields[f"{probe} period"] = s[probe].get("period")
    return [f"{name} {value!r} is not a whole number" for name, value in fields.items() if type(value) is not int]


def _names(s: dict) -> list[str]:
    problems = []
    if not s.get("image") or any(c.isspace() for c in str(s["image"])):
        problems.append(f"image {s.get('image')!r} is not an image reference (e.g. rehab-agi:1.0.0)")
    for key in ("name", "namespace"):
        if not _DNS_LABEL.match(str(s[key])):
            problems.append(f"{key} {s[key]!r} is not a DNS label (lower-case letters, digits, '-', 63 at most)")
    if s["ingress_host"] and not _DNS_NAME.match(s["ingress_host"]):
        problems.append(f"ingress_host {s['ingress_host']!r} is not a DNS name")
    for key in list(s["env"]) + list(s["secret_keys"]):
        if not _ENV_NAME.match(str(key)):
            problems.append(f"environment variable name {key!r} is not valid")
    clash = sorted(set(s["env"]) & set(s["secret_keys"]))
    if clash:
        problems.append(f"{', '.join(clash)} set both in env and in the secret")
    return problems


def _shard_map(s: dict) -> list[str]:
    """The service reads {"shards": [{name, min_id, max_id, write_dsn, read_dsn?, redis}], "coordinator":
    {"dsn"}?} (the app servers' shards.json, rehab.scale.app); anything else makes every pod exit."""
    document = s["shard_map"]
    if document is None:
        return []
    shards = document.get("shards") if isinstance(document, dict) else None
    if not isinstance(shards, list) or not shards:
        return [
            f"shard_map is not the service's shard document (a {type(document).__name__}; it needs "
            f'{{"shards": [...], "coordinator": ...}} as the app servers\' {SHARD_MAP_PATH}, with each '
            "shard's write_dsn, not the inventory's rehab_shards)"
        ]
    missing = [
        str(e.get("name")) if isinstance(e, dict) else repr(e)
        for e in shards
        if not isinstance(e, dict) or not e.get("write_dsn")
    ]
    if missing:
        return [f"shard_map has no write_dsn for {', '.join(missing)}: the service refuses such a map"]
    return []


def _ca(s: dict) -> list[str]:
    """The CA the service verifies the databases and Redis with, at the path its settings name."""
    if not s["ca_certificate"] and not s["ca_path"]:
        return []
    problems = []
    if not str(s["ca_certificate"]).lstrip().startswith("-----BEGIN CERTIFICATE-----"):
        problems.append("ca_certificate is not a PEM certificate")
    path = str(s["ca_path"])
    if (
        not path.startswith("/")
        or path.endswith("/")
        or path.rsplit("/", 1)[0] in ("", SHARD_MAP_PATH.rsplit("/", 1)[0])
    ):
        problems.append(f"ca_path {path!r} is not a file path in a directory of its own (not / or the shard map's)")
    return problems


def _scaling(s: dict) -> list[str]:
    problems = []
    auto = s["autoscaler"]
    if not 1 <= s["port"] <= 65535:
        problems.append(f"port {s['port']} is not a TCP port")
    if not 1 <= auto["min"] <= auto["max"]:
        problems.append(f"autoscaler min {auto['min']} and max {auto['max']}: need 1 <= min <= max")
    if not 1 <= auto["cpu_percent"] <= 100:
        problems.append(f"autoscaler cpu_percent {auto['cpu_percent']} is not between 1 and 100")
    if not auto["min"] <= s["replicas"] <= auto["max"]:
        problems.append(f"replicas {s['replicas']} is outside the autoscaler's {auto['min']}-{auto['max']}")
    if s["max_surge"] < 0 or s["max_unavailable"] < 0 or s["max_surge"] + s["max_unavailable"] == 0:
        problems.append(
            f"max_surge {s['max_surge']} and max_unavailable {s['max_unavailable']}:"
            " a rollout needs one of them above 0"
        )
    if not 0 <= s["disruption_max_unavailable"] < auto["min"]:
        problems.append(
            f"disruption_max_unavailable {s['disruption_max_unavailable']}"
            f" must stay below the autoscaler's min {auto['min']}"
        )
    for probe in ("liveness", "readiness"):
        p = s[probe]
        if not str(p["path"]).startswith("/"):
            problems.append(f"{probe} path {p['path']!r} does not start with '/'")
        if p["period"] < 1 or p["initial_delay"] < 0:
            problems.append(f"{probe} period {p['period']} / initial_delay {p['initial_delay']} out of range")
    return problems


def _resources(s: dict) -> list[str]:
    problems = []
    requests, limits = s["requests"], s["limits"]
    try:
        if millicores(requests.get("cpu")) > millicores(limits.get("cpu")):
            problems.append(f"requests cpu {requests['cpu']} is above limits cpu {limits['cpu']}")
        if millicores(requests["cpu"]) == 0:
            problems.append("requests cpu is 0: the autoscaler's CPU percentage is of the request")
        if memory_bytes(requests.get("memory")) > memory_bytes(limits.get("memory")):
            problems.append(f"requests memory {requests['memory']} is above limits memory {limits['memory']}")
    except ManifestError as error:
        problems.append(str(error))
    return problems


def check(s: dict) -> None:
    """Refuse settings Kubernetes would accept but that break the guide's promises, naming the value."""
    problems = _integers(s)
    if problems:  # the comparisons below need numbers
        raise ManifestError("; ".join(problems))
    problems = _names(s) + _scaling(s) + _resources(s) + _shard_map(s) + _ca(s)
    if problems:
        raise ManifestError("; ".join(problems))


def _metadata(s: dict, name: str | None = None) -> dict:
    return {
        "name": name or s["name"],
        "namespace": s["namespace"],
        "labels": {
            "app.kubernetes.io/name": s["name"],
            "app.kubernetes.io/managed-by": "rehab-scale",
            APP_LABEL: s["name"],
        },
    }


def _probe(p: dict) -> dict:
    return {
        "httpGet": {"path": p["path"], "port": "http"},
        "initialDelaySeconds": p["initial_delay"],
        "periodSeconds": p["period"],
    }


def app_manifests(settings: dict) -> list[dict]:
    """Every object of the app, in apply order. Raises ManifestError naming a bad value."""
    s = {**OPTIONAL, **{key: value for key, value in settings.items() if value is not None}}
    missing = sorted(set(REQUIRED) - set(s))
    if missing:
        raise ManifestError(f"settings missing: {', '.join(missing)}")
    check(s)
    selector = {"app.kubernetes.io/name": s["name"]}
    env = {str(k): str(v) for k, v in s["env"].items()}
    volumes, mounts = [], []
    if s["shard_map"] is not None:
        env["REHAB_AGI_SHARDS"] = SHARD_MAP_PATH
        volumes.append(
            {
                "name": "shard-map",
                "configMap": {"name": s["name"], "items": [{"key": "shards.json", "path": "shards.json"}]},
            }
        )
        mounts.append({"name": "shard-map", "mountPath": SHARD_MAP_PATH.rsplit("/", 1)[0], "readOnly": True})
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _metadata(s), "data": dict(env)}
    if s["shard_map"] is not None:
        config["data"]["shards.json"] = json.dumps(s["shard_map"], sort_keys=True)
    env_from = [{"configMapRef": {"name": s["name"]}}]
    objects = [config]
    if s["ca_certificate"]:
        ca_dir, ca_file = s["ca_path"].rsplit("/", 1)
        ca_name = f"{s['name']}-ca"
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": _metadata(s, ca_name),
                "data": {"ca.pem": s["ca_certificate"]},
            }
        )
        volumes.append({"name": "ca", "configMap": {"name": ca_name, "items": [{"key": "ca.pem", "path": ca_file}]}})
        mounts.append({"name": "ca", "mountPath": ca_dir, "readOnly": True})
    if s["secret_keys"]:
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": _metadata(s),
                "type": "Opaque",
                "stringData": dict.fromkeys(sorted(s["secret_keys"]), SECRET_PLACEHOLDER),
            }
        )
        env_from.append({"secretRef": {"name": s["name"]}})
    container = {
        "name": s["name"],
        "image": s["image"],
        "imagePullPolicy": s["image_pull_policy"],
        "ports": [{"name": "http", "containerPort": s["port"], "protocol": "TCP"}],
        "envFrom": env_from,
        "env": [
            {"name": "REHAB_AGI_BIND", "value": "0.0.0.0"},  # noqa: S104 - every address of the pod, behind its Service
            {"name": "REHAB_AGI_PORT", "value": str(s["port"])},
        ],
        "resources": {"requests": dict(s["requests"]), "limits": dict(s["limits"])},
        "livenessProbe": _probe(s["liveness"]),
        "readinessProbe": _probe(s["readiness"]),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if mounts:
        container["volumeMounts"] = mounts
    pod_spec = {
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": s["run_as_user"],
            "runAsGroup": s["run_as_user"],
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
    }
    if volumes:
        pod_spec["volumes"] = volumes
    objects.append(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": _metadata(s),
            "spec": {
                "selector": selector,
                "ports": [{"name": "http", "port": s["port"], "targetPort": "http", "protocol": "TCP"}],
            },
        }
    )
    objects.append(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": _metadata(s),
            "spec": {
                "replicas": s["replicas"],
                "selector": {"matchLabels": selector},
                "strategy": {
                    "type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": s["max_surge"], "maxUnavailable": s["max_unavailable"]},
                },
                "template": {"metadata": {"labels": {**selector, APP_LABEL: s["name"]}}, "spec": pod_spec},
            },
        }
    )
    auto = s["autoscaler"]
    objects.append(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": _metadata(s),
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": s["name"]},
                "minReplicas": auto["min"],
                "maxReplicas": auto["max"],
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": auto["cpu_percent"]},
                        },
                    }
                ],
            },
        }
    )
    objects.append(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": _metadata(s),
            "spec": {"maxUnavailable": s["disruption_max_unavailable"], "selector": {"matchLabels": selector}},
        }
    )
    rule = {
        "http": {
            "paths": [
                {
                    "path": "/",
                    "pathType": "Prefix",
                    "backend": {"service": {"name": s["name"], "port": {"name": "http"}}},
                }
            ]
        }
    }
    if s["ingress_host"]:
        rule["host"] = s["ingress_host"]
    objects.append(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": _metadata(s),
            "spec": {"ingressClassName": s["ingress_class"], "rules": [rule]},
        }
    )
    return objects


# The cluster's metrics for the existing Prometheus (outside the cluster): its service account may
# read the kubelets' metrics (nodes/metrics: /metrics and /metrics/cadvisor on port 10250, nothing
# else of the kubelet API) and kube-state-metrics through the API server's proxy to that one Service.
MONITORING_NAMESPACE = "kube-system"
PROMETHEUS_ACCOUNT = "rehab-prometheus"
KUBE_STATE_METRICS = "kube-state-metrics"
KUBE_STATE_METRICS_PORT_NAME = "http-metrics"
# The Service and port as the API server's proxy names them: in the path Prometheus reads and in the
# one resourceName its role allows.
KUBE_STATE_METRICS_PROXY_NAME = f"{KUBE_STATE_METRICS}:{KUBE_STATE_METRICS_PORT_NAME}"
# What kube-state-metrics watches and exports: what the pod rules read (rehab.scale.monitoring),
# no more (its role may list and watch these only).
KUBE_STATE_METRICS_RESOURCES = {
    "pods": ("", "pods"),
    "deployments": ("apps", "deployments"),
    "horizontalpodautoscalers": ("autoscaling", "horizontalpodautoscalers"),
    "nodes": ("", "nodes"),
}
_IMAGE = re.compile(r"^[a-z0-9][a-z0-9./:_-]*(@sha256:[0-9a-f]{64})?$")


def kube_state_metrics_path() -> str:
    """Where Prometheus reads kube-state-metrics: the API server's proxy to its Service."""
    return f"/api/v1/namespaces/{MONITORING_NAMESPACE}/services/{KUBE_STATE_METRICS_PROXY_NAME}/proxy/metrics"


def monitoring_manifests(image: str, app_name: str) -> list[dict]:
    """The objects that let the Prometheus outside the cluster read it, in apply order: its service
    account with a long-lived token and the two permissions above, and kube-state-metrics (pinned
    ``image``). Each carries the label rehab.scale/app=<app_name>-monitoring."""
    if not image or not _IMAGE.match(image) or ":" not in image.rsplit("/", 1)[-1]:
        raise ManifestError(f"kube-state-metrics image {image!r} is not an image reference with a tag")
    label = f"{app_name}-monitoring"

    def meta(name, namespaced=True):
        metadata = {
            "name": name,
            "labels": {"app.kubernetes.io/managed-by": "rehab-scale", APP_LABEL: label},
        }
        if namespaced:
            metadata["namespace"] = MONITORING_NAMESPACE
        return metadata

    def binding(name, account):
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": meta(name, namespaced=False),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": MONITORING_NAMESPACE}],
        }

    ksm_selector = {"app.kubernetes.io/name": KUBE_STATE_METRICS}
    groups = {}
    for group, resource in KUBE_STATE_METRICS_RESOURCES.values():
        groups.setdefault(group, []).append(resource)
    probe = {"timeoutSeconds": 5, "periodSeconds": 10}
    live = {"httpGet": {"path": "/livez", "port": KUBE_STATE_METRICS_PORT_NAME}, **probe}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(PROMETHEUS_ACCOUNT)},
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                **meta(f"{PROMETHEUS_ACCOUNT}-token"),
                "annotations": {"kubernetes.io/service-account.name": PROMETHEUS_ACCOUNT},
            },
            "type": "kubernetes.io/service-account-token",
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": meta(PROMETHEUS_ACCOUNT, namespaced=False),
            "rules": [
                {"apiGroups": [""], "resources": ["nodes/metrics"], "verbs": ["get"]},
                {
                    "apiGroups": [""],
                    "resources": ["services/proxy"],
                    "resourceNames": [KUBE_STATE_METRICS_PROXY_NAME],
                    "verbs": ["get"],
                },
            ],
        },
        binding(PROMETHEUS_ACCOUNT, PROMETHEUS_ACCOUNT),
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(KUBE_STATE_METRICS)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": meta(KUBE_STATE_METRICS, namespaced=False),
            "rules": [
                {"apiGroups": [group], "resources": sorted(resources), "verbs": ["list", "watch"]}
                for group, resources in sorted(groups.items())
            ],
        },
        binding(KUBE_STATE_METRICS, KUBE_STATE_METRICS),
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta(KUBE_STATE_METRICS),
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": ksm_selector},
                "template": {
                    "metadata": {"labels": {**ksm_selector, APP_LABEL: label}},
                    "spec": {
                        "serviceAccountName": KUBE_STATE_METRICS,
                        "automountServiceAccountToken": True,
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": 65534,
                            "runAsGroup": 65534,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [
                            {
                                "name": KUBE_STATE_METRICS,
                                "image": image,
                                "args": [f"--resources={','.join(sorted(KUBE_STATE_METRICS_RESOURCES))}"],
                                "ports": [
                                    {"name": KUBE_STATE_METRICS_PORT_NAME, "containerPort": 8080},
                                    {"name": "telemetry", "containerPort": 8081},
                                ],
                                "livenessProbe": live,
                                "readinessProbe": {"httpGet": {"path": "/readyz", "port": "telemetry"}, **probe},
                                "resources": {
                                    "requests": {"cpu": "10m", "memory": "64Mi"},
                                    "limits": {"cpu": "100m", "memory": "128Mi"},
                                },
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                            }
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta(KUBE_STATE_METRICS),
            "spec": {
                "selector": ksm_selector,
                "ports": [
                    {
                        "name": KUBE_STATE_METRICS_PORT_NAME,
                        "port": 8080,
                        "targetPort": KUBE_STATE_METRICS_PORT_NAME,
                        "protocol": "TCP",
                    }
                ],
            },
        },
    ]


def validate(manifests: list[dict], kubernetes_version: str) -> None:
    """Check each manifest against the schema of that Kubernetes release, strictly (unknown fields
    fail). Raises ManifestError naming the object, the field and the reason."""
    import kubernetes_validate  # noqa: PLC0415 - only where validation runs

    problems = []
    for manifest in manifests:
        what = f"{manifest.get('kind')}/{manifest.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(manifest, kubernetes_version, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
            problems.append(f"{what}: {where}: {error.message}")
        except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as error:
            problems.append(f"{what}: no schema for Kubernetes {kubernetes_version}: {error}")
    if problems:
        raise ManifestError("; ".join(problems))
