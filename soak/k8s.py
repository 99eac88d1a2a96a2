"""Pure: the Kubernetes manifests of a sharded run (``soak k8s render``).

A run over N machines is one Indexed Job: Kubernetes gives each of its N
pods an index, the pod passes it to ``soak run --shard=$(JOB_COMPLETION_INDEX)/N``,
and every pod gets the same ``--start-at`` (an absolute instant, written
into the manifest when it is rendered), so no pod waits for a signal and a
pod that starts late, or a replacement, joins the schedule where it is.

What :func:`run_manifests` renders, in apply order:

- a ConfigMap with the profile, as written;
- a headless Service (the pods' DNS names and their ``metrics`` port for
  Prometheus' service discovery);
- a ReadWriteMany PersistentVolumeClaim the shards write their directories
  to (``/results/<stamp>-<label>/<stamp>-shard-I-of-N``);
- the Job: ``completionMode: Indexed``, ``parallelism`` = ``completions``
  (every shard at once), ``podReplacementPolicy: Failed`` (a replacement
  only once the old pod is gone: never two pods of one shard),
  ``backoffLimitPerIndex: 1`` (a crashed shard is started once more), and
  a ``podFailurePolicy`` from soak's exit codes: 2 (bad input, the same in
  every pod) fails the Job, 3 (a permanent refusal) fails the index without
  a retry, and an eviction or preemption is not counted as a failure.

:func:`merge_manifest` is the merge Job, applied once the run's Job has
completed (Kubernetes has no Job dependencies).

The fields used need Kubernetes 1.29 or later (``backoffLimitPerIndex``
and ``podReplacementPolicy`` beta there, on by default; GA in 1.33 and
1.34); tests/test_k8s.py validates the output against 1.29, 1.33 and 1.37.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from soak.results.names import iso, run_dir_name
from soak.summary import EXIT_TARGET, EXIT_USAGE

METRICS_PORT = 9464
PROFILE_DIR = "/profile"
RESULTS_DIR = "/results"
PROFILE_FILE = "profile.toml"
# seconds past the run's end before Kubernetes stops the Job: the close
# grace, the last interval's files, image pulls and scheduling
DEADLINE_SLACK = 900
MIN_VERSION = "1.29"
# a "safe" sysctl (allowed in every pod): the ephemeral ports a shard dials from
PORTS = "1024 65000"


@dataclass(frozen=True)
class Settings:
    name: str  # the Job's name (a DNS label)
    image: str
    shards: int
    start_at: float  # epoch seconds: every pod's --start-at
    duration: float  # the run's, seconds
    label: str  # the profile's run.label
    profile_text: str
    profile_name: str = PROFILE_FILE
    namespace: str | None = None
    workers: str | None = None  # --workers inside each pod
    cpu: str = "2"
    memory: str = "2Gi"
    storage: str = "10Gi"
    storage_class: str | None = None
    env_secret: str | None = None  # a Secret whose keys become env (token_env)
    lead: float = 0.0  # seconds from rendering to start_at, for the deadline

    @property
    def run_id(self) -> str:
        """The results directory every shard writes into."""
        return run_dir_name(self.label, self.start_at)

    @property
    def run_label(self) -> str:
        """``soak.dev/run``: the run, as a label value."""
        return dns_name(self.run_id.lower(), 63)

    @property
    def start_text(self) -> str:
        return iso(self.start_at).replace("+00:00", "Z").replace(".000Z", "Z")


def dns_name(text: str, limit: int = 52) -> str:
    """``text`` as a DNS label (RFC 1123): lower case, digits and dashes."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:limit].strip("-")
    return name or "soak"


def default_name(label: str) -> str:
    """The Job's name when none is given: the label, prefixed with soak-."""
    name = dns_name(label)
    return name if name.startswith("soak") else f"soak-{name}"


def _meta(s: Settings, name: str, role: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": _labels(s, role)}
    if s.namespace:
        meta["namespace"] = s.namespace
    return meta


def _labels(s: Settings, role: str | None = None) -> dict[str, str]:
    labels = {"app.kubernetes.io/name": "soak", "soak.dev/run": s.run_label}
    if role is not None:
        labels["soak.dev/role"] = role  # shard or merge
    return labels


def shard_args(s: Settings) -> list[str]:
    args = [
        "run",
        f"{PROFILE_DIR}/{s.profile_name}",
        f"--shard=$(JOB_COMPLETION_INDEX)/{s.shards}",
        f"--start-at={s.start_text}",
        f"--results-dir={RESULTS_DIR}",
        f"--metrics-port={METRICS_PORT}",
        "--metrics-addr=0.0.0.0",
        "--quiet",
    ]
    if s.workers:
        args.append(f"--workers={s.workers}")
    return args


def _container(s: Settings, args: list[str], mounts: list[dict[str, Any]]) -> dict[str, Any]:
    env: list[dict[str, Any]] = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    c: dict[str, Any] = {
        "name": "soak",
        "image": s.image,
        "args": args,
        "env": env,
        "resources": {
            "requests": {"cpu": s.cpu, "memory": s.memory},
            "limits": {"memory": s.memory},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [*mounts, {"name": "tmp", "mountPath": "/tmp"}],
    }
    if s.env_secret:
        c["envFrom"] = [{"secretRef": {"name": s.env_secret}}]
    return c


def _pod_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _results_volume(s: Settings) -> dict[str, Any]:
    return {"name": "results", "persistentVolumeClaim": {"claimName": f"{s.name}-results"}}


def run_manifests(s: Settings) -> list[dict[str, Any]]:
    """ConfigMap, Service, PersistentVolumeClaim and the Indexed Job."""
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(s, f"{s.name}-profile"),
        "data": {s.profile_name: s.profile_text},
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(s, s.name),
        "spec": {
            "clusterIP": "None",
            "selector": _labels(s, "shard"),
            "ports": [{"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics"}],
        },
    }
    claim: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta(s, f"{s.name}-results"),
        "spec": {
            "accessModes": ["ReadWriteMany"],
            "resources": {"requests": {"storage": s.storage}},
        },
    }
    if s.storage_class:
        claim["spec"]["storageClassName"] = s.storage_class
    container = _container(
        s,
        shard_args(s),
        [
            {"name": "profile", "mountPath": PROFILE_DIR, "readOnly": True},
            {"name": "results", "mountPath": RESULTS_DIR},
        ],
    )
    container["env"].insert(
        0,
        {
            "name": "JOB_COMPLETION_INDEX",
            "valueFrom": {
                "fieldRef": {
                    "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"
                }
            },
        },
    )
    container["ports"] = [{"name": "metrics", "containerPort": METRICS_PORT}]
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(s, s.name, "shard"),
        "spec": {
            "completionMode": "Indexed",
            "completions": s.shards,
            "parallelism": s.shards,
            "podReplacementPolicy": "Failed",
            "backoffLimitPerIndex": 1,
            "podFailurePolicy": {
                "rules": [
                    _exit_rule("FailJob", EXIT_USAGE),
                    _exit_rule("FailIndex", EXIT_TARGET),
                    {
                        "action": "Ignore",
                        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                    },
                ]
            },
            "activeDeadlineSeconds": int(s.lead + s.duration + DEADLINE_SLACK),
            "ttlSecondsAfterFinished": 86400,
            "template": {
                "metadata": {
                    "labels": _labels(s, "shard"),
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(METRICS_PORT),
                    },
                },
                "spec": {
                    "restartPolicy": "Never",
                    "subdomain": s.name,
                    # SIGTERM: clients close with 1001, the last interval is written
                    "terminationGracePeriodSeconds": 30,
                    "securityContext": {
                        **_pod_security(),
                        "sysctls": [{"name": "net.ipv4.ip_local_port_range", "value": PORTS}],
                    },
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": _labels(s, "shard")},
                        }
                    ],
                    "containers": [container],
                    "volumes": [
                        {"name": "profile", "configMap": {"name": f"{s.name}-profile"}},
                        _results_volume(s),
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    }
    return [config, service, claim, job]


def _exit_rule(action: str, code: int) -> dict[str, Any]:
    return {
        "action": action,
        "onExitCodes": {"containerName": "soak", "operator": "In", "values": [code]},
    }


def merge_manifest(s: Settings) -> dict[str, Any]:
    """The Job that merges the shards once the run's Job has completed."""
    container = _container(
        s,
        ["merge", f"{RESULTS_DIR}/{s.run_id}"],
        [{"name": "results", "mountPath": RESULTS_DIR}],
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _meta(s, f"{s.name}-merge", "merge"),
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": 86400,
            "template": {
                "metadata": {"labels": _labels(s, "merge")},
                "spec": {
                    "restartPolicy": "Never",
                    "securityContext": _pod_security(),
                    "containers": [container],
                    "volumes": [_results_volume(s), {"name": "tmp", "emptyDir": {}}],
                },
            },
        },
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the profile) as literal blocks, as written."""


def _text(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    literal = "\n" in data and not any(line != line.rstrip() for line in data.splitlines())
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if literal else None)


_Dumper.add_representer(str, _text)


def render(docs: list[dict[str, Any]], header: str) -> str:
    """YAML documents, with ``header`` as comment lines first."""
    comments = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    body = yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False, width=100, default_flow_style=False)
    return comments + "---\n" + body
