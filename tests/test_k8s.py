"""The Kubernetes manifests (soak.k8s, soak k8s render, deploy/), the
Dockerfile, the Prometheus rules and the Grafana dashboard, checked without
a cluster: kubernetes-validate --strict against the versions the manifests
claim, promtool where Debian's prometheus is installed, and soak's own
invariants that no schema can see."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from soak.cli import cli
from soak.config.load import parse_profile
from soak.k8s import METRICS_PORT, RESULTS_DIR, Settings, merge_manifest, run_manifests
from soak.metrics import Interval
from soak.prom import LiveMetrics
from soak.results.names import run_dir_name
from soak.run.shard import run_root
from soak.summary import EXIT_TARGET, EXIT_USAGE
from tests.support.runs import make_profile

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
START = "2026-12-03T12:05:00Z"
START_EPOCH = 1796299500.0
PROMTOOL = shutil.which("promtool")


def settings(**kw: Any) -> Settings:
    base: dict[str, Any] = {
        "name": "soak-24h",
        "image": "registry.example/soak:0.1.0",
        "shards": 4,
        "start_at": START_EPOCH,
        "duration": 86400.0,
        "label": "soak-24h",
        "profile_text": (DEPLOY / "kubernetes" / "profile.toml").read_text(),
    }
    base.update(kw)
    return Settings(**base)


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in docs}


@pytest.mark.parametrize("version", ["1.29.0", "1.33.0", "1.37.0"])
def test_the_manifests_validate_strictly(version: str) -> None:
    s = settings(namespace="load", storage_class="nfs", env_secret="gateway-token", workers="2")
    for doc in [*run_manifests(s), merge_manifest(s)]:
        kubernetes_validate.validate(doc, version, strict=True)


def test_strict_validation_catches_a_typo() -> None:
    job = by_kind(run_manifests(settings()))["Job"]
    job["spec"]["backoffLimitPerIndx"] = job["spec"].pop("backoffLimitPerIndex")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, "1.33.0", strict=True)


def test_what_no_schema_sees() -> None:
    s = settings()
    docs = by_kind(run_manifests(s))
    job = docs["Job"]
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"  # the schema has no enum here
    assert spec["parallelism"] == spec["completions"] == 4
    assert spec["podReplacementPolicy"] == "Failed"
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (c,) = pod["containers"]
    # the index reaches --shard, from the annotation the Job controller sets
    assert "--shard=$(JOB_COMPLETION_INDEX)/4" in c["args"]
    env = {e["name"]: e for e in c["env"]}
    assert env["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    )
    # one start time for every pod: it is in the one pod template, absolute
    starts = [a for a in c["args"] if a.startswith("--start-at=")]
    assert starts == [f"--start-at={START}"]
    # the failure policy uses soak's own exit codes
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0] == {
        "action": "FailJob",
        "onExitCodes": {"containerName": "soak", "operator": "In", "values": [EXIT_USAGE]},
    }
    assert rules[1]["action"] == "FailIndex"
    assert rules[1]["onExitCodes"]["values"] == [EXIT_TARGET]
    assert rules[2]["onPodConditions"] == [{"type": "DisruptionTarget", "status": "True"}]
    # the metrics port: soak's flag, the container's named port, the Service's
    assert f"--metrics-port={METRICS_PORT}" in c["args"]
    assert "--metrics-addr=0.0.0.0" in c["args"]
    assert c["ports"] == [{"name": "metrics", "containerPort": METRICS_PORT}]
    svc = docs["Service"]["spec"]
    assert svc["clusterIP"] == "None"
    assert svc["ports"][0]["targetPort"] == "metrics"
    assert svc["selector"].items() <= spec["template"]["metadata"]["labels"].items()
    assert pod["subdomain"] == docs["Service"]["metadata"]["name"]
    # the profile in the ConfigMap is the profile, and the pod reads it there
    text = docs["ConfigMap"]["data"]["profile.toml"]
    assert text == s.profile_text
    assert parse_profile(text, "p.toml", {}).run.label == "soak-24h"
    assert c["args"][1] == "/profile/profile.toml"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["profile"]["configMap"]["name"] == docs["ConfigMap"]["metadata"]["name"]
    claim = docs["PersistentVolumeClaim"]
    assert volumes["results"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    # the merge Job reads the directory the shards write into
    merge = merge_manifest(s)["spec"]["template"]["spec"]
    (mc,) = merge["containers"]
    assert mc["args"] == ["merge", str(run_root(RESULTS_DIR, "soak-24h", START_EPOCH))]
    assert mc["args"][1] == f"{RESULTS_DIR}/{run_dir_name('soak-24h', START_EPOCH)}"
    merge_labels = merge_manifest(s)["spec"]["template"]["metadata"]["labels"]
    assert not svc["selector"].items() <= merge_labels.items()  # not a scrape target


def test_exit_code_2_is_what_bad_input_gives(tmp_path: Path) -> None:
    bad = tmp_path / "p.toml"
    bad.write_text('[target]\nurl = "ws://x:1/ws"\n[[clients.stages]]\nkind = "hold"\n')
    res = CliRunner().invoke(cli, ["run", str(bad), "--shard=0/2", f"--start-at={START}"])
    assert res.exit_code == EXIT_USAGE


def test_the_shipped_manifests_are_the_rendered_ones() -> None:
    for name, extra in (("soak-run.yaml", []), ("soak-merge.yaml", ["--merge"])):
        res = CliRunner().invoke(
            cli,
            [
                "k8s",
                "render",
                str(DEPLOY / "kubernetes" / "profile.toml"),
                "--shards=4",
                "--image=registry.example/soak:0.1.0",
                f"--start-at={START}",
                *extra,
            ],
        )
        assert res.exit_code == 0, res.output
        shipped = (DEPLOY / "kubernetes" / name).read_text()
        assert res.output == shipped, f"regenerate deploy/kubernetes/{name} (docs/distributed.md)"
        docs = [d for d in yaml.safe_load_all(shipped) if d]
        for doc in docs:
            kubernetes_validate.validate(doc, "1.33.0", strict=True)


def test_render_bad_input(tmp_path: Path) -> None:
    profile = str(DEPLOY / "kubernetes" / "profile.toml")
    r = CliRunner()
    res = r.invoke(cli, ["k8s", "render", profile, "--shards=0", "--image=x"])
    assert res.exit_code == 2
    assert "--shards" in res.output
    res = r.invoke(cli, ["k8s", "render", profile, "--shards=2", "--image=x", "--start-at=soon"])
    assert res.exit_code == 2
    assert res.output.strip() == (
        "Error: --start-at: expected a UTC instant with its offset, like "
        '2026-12-03T12:05:00Z, got "soon"'
    )
    res = r.invoke(cli, ["k8s", "render", profile, "--shards=2", "--image=x", "--merge"])
    assert res.exit_code == 2
    assert "--merge: expected --start-at TIME" in res.output
    res = r.invoke(cli, ["k8s", "render", str(tmp_path / "none.toml"), "--shards=2", "--image=x"])
    assert res.exit_code == 2
    assert "none.toml" in res.output
    assert "Traceback" not in res.output
    secret = tmp_path / "t.toml"
    secret.write_text(
        (DEPLOY / "kubernetes" / "profile.toml")
        .read_text()
        .replace('protocol = "json"', 'protocol = "json"\ntoken_env = "GATEWAY_TOKEN"')
    )
    res = r.invoke(cli, ["k8s", "render", str(secret), "--shards=2", "--image=x"])
    assert res.exit_code == 0
    assert "pass --env-secret SECRET (a Secret with the key GATEWAY_TOKEN)" in res.output


# -- the Dockerfile ------------------------------------------------------------------------


def dockerfile() -> list[list[str]]:
    lines = []
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        if raw.strip() and not raw.lstrip().startswith("#"):
            lines.append(raw.split())
    return lines


def test_the_dockerfile_copies_what_exists_and_runs_soak_unprivileged() -> None:
    lines = dockerfile()
    assert lines[0][0] == "FROM"
    assert lines[0][1].startswith("python:3.1")
    copies = [line[1:-1] for line in lines if line[0] == "COPY"]
    sources = [src for srcs in copies for src in srcs]
    assert sources == ["pyproject.toml", "README.md", "soak"]
    for src in sources:
        assert (ROOT / src).exists(), src
    # what pyproject.toml needs to build is among them
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["readme"] in sources
    assert ["RUN", "pip", "install", ".", "&&", "rm", "-rf", "/src"] in lines
    user = [line for line in lines if line[0] == "USER"]
    assert user == [["USER", "10001:10001"]]
    assert ["ENTRYPOINT", '["soak"]'] in lines
    # the uid the pods run as (runAsUser) is the image's user
    pod = by_kind(run_manifests(settings()))["Job"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == 10001


@pytest.mark.process
def test_the_files_the_dockerfile_copies_build_a_complete_wheel(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "soak", src / "soak", ignore=shutil.ignore_patterns("__pycache__"))
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    (wheel,) = (tmp_path / "dist").glob("soak-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "soak/profile.schema.json" in names
    assert "soak/profiles/demo.toml" in names
    assert "soak/commands/k8s.py" in names
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "soak = soak.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()


# -- Prometheus rules and the Grafana dashboard ----------------------------------------------


def exposed_names() -> set[str]:
    """Every series name soak's /metrics has."""
    live = LiveMetrics(
        make_profile('[[clients.stages]]\nkind = "hold"\nduration = "1s"\n'), run="r"
    )
    iv = Interval(0, 0.0)
    for family in (iv.closes, iv.closes_by_category, iv.handshake_failures, iv.dropped_samples):
        family["x"] += 1
    live.interval(iv, {"server_connections": 3, "connection_gap": 0})
    names = set()
    for line in live.render().decode().splitlines():
        if line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(soak_[a-z0-9_]+)", expr))


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DEPLOY / "grafana" / "soak-dashboard.json").read_text())
    return data


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p["targets"]]


def test_the_dashboard_is_portable_and_queries_what_soak_exposes() -> None:
    d = dashboard()
    assert d["uid"] == "soak-run"
    assert isinstance(d["schemaVersion"], int)
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["run"]["definition"] == "label_values(soak_run_info, run)"
    names = exposed_names()
    ids = set()
    for p in d["panels"]:
        assert p["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
        assert set(p["gridPos"]) == {"h", "w", "x", "y"}
        assert p["id"] not in ids
        ids.add(p["id"])
        refs = [t["refId"] for t in p["targets"]]
        assert len(set(refs)) == len(refs)
        assert all(refs)
        for t in p["targets"]:
            assert metric_names(t["expr"]) <= names, t["expr"]
            assert 'run=~"$run"' in t["expr"]
    for expr in dashboard_exprs():
        # quantiles come from summed buckets, never from averaged percentiles
        assert "avg" not in expr
        if "histogram_quantile" in expr:
            assert re.search(r"sum by \([^)]*\ble\b[^)]*\) \(rate\(soak_\w+_bucket", expr)
    rules = yaml.safe_load((DEPLOY / "prometheus" / "soak-rules.yml").read_text())
    for rule in rules["groups"][0]["rules"]:
        used = metric_names(rule["expr"])
        assert used <= names, rule["expr"]


def grafana_to_promql(expr: str) -> str:
    return expr.replace("$__rate_interval", "1m").replace("$run", ".*")


@pytest.mark.process
@pytest.mark.skipif(PROMTOOL is None, reason="needs promtool (Debian's prometheus package)")
def test_promtool_parses_the_rules_the_dashboard_and_the_scrape_config(tmp_path: Path) -> None:
    assert PROMTOOL is not None
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"soak:dashboard:{i}", "expr": grafana_to_promql(e)}
                    for i, e in enumerate(dashboard_exprs())
                ],
            }
        ]
    }
    (tmp_path / "dashboard.rules.yml").write_text(yaml.safe_dump(rules))
    for path in (tmp_path / "dashboard.rules.yml", DEPLOY / "prometheus" / "soak-rules.yml"):
        res = subprocess.run(
            [PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True
        )
        assert res.returncode == 0, res.stdout + res.stderr
    shutil.copy(DEPLOY / "prometheus" / "scrape-static.yml", tmp_path / "prometheus.yml")
    shutil.copy(DEPLOY / "prometheus" / "soak-rules.yml", tmp_path / "soak-rules.yml")
    res = subprocess.run(
        [PROMTOOL, "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    # the Kubernetes one's relabelling, with static targets (this build has no k8s SD)
    k8s = yaml.safe_load((DEPLOY / "prometheus" / "scrape-kubernetes.yml").read_text())
    job = k8s["scrape_configs"][0]
    job.pop("kubernetes_sd_configs")
    job["static_configs"] = [{"targets": ["127.0.0.1:9464"]}]
    (tmp_path / "k8s.yml").write_text(yaml.safe_dump(k8s))
    res = subprocess.run(
        [PROMTOOL, "check", "config", str(tmp_path / "k8s.yml")], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stdout + res.stderr
