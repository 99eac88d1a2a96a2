"""``soak k8s render``: the Kubernetes manifests of a sharded run (soak.k8s)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import click

from soak.commands.common import errors_as_exit_codes, fail
from soak.commands.complete import PROFILE
from soak.config.load import parse_profile
from soak.config.tables.run import start_at as parse_start_at
from soak.config.validation import Loader
from soak.k8s import (
    MIN_VERSION,
    Settings,
    default_name,
    dns_name,
    merge_manifest,
    render,
    run_manifests,
)


class _AnyToken(Mapping[str, str]):
    """Rendering needs no token: the pods read it from their Secret."""

    def __getitem__(self, key: str) -> str:
        return "set-in-the-pod"

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


@click.group()
def k8s() -> None:
    """Kubernetes manifests for a run over several machines (docs/distributed.md)."""


@k8s.command("render")
@click.argument("profile", type=PROFILE)
@click.option("--shards", type=click.IntRange(1, 10_000), required=True, help="Pods (shards).")
@click.option("--image", required=True, help="The soak image (built from the Dockerfile).")
@click.option(
    "--start-at",
    metavar="TIME",
    help="The run's start, e.g. 2026-12-03T12:05:00Z (default: --start-in from now).",
)
@click.option(
    "--start-in",
    default=180,
    show_default=True,
    type=click.IntRange(0, 7 * 86400),
    metavar="SECONDS",
    help="Without --start-at: start this long after rendering (image pulls, scheduling).",
)
@click.option("--name", help="The Job's name (default: soak-<label>).")
@click.option("--namespace", help="metadata.namespace of every object.")
@click.option("--workers", metavar="N|auto", help="soak run --workers inside each pod.")
@click.option("--cpu", default="2", show_default=True, help="CPU request per pod.")
@click.option("--memory", default="2Gi", show_default=True, help="Memory request and limit.")
@click.option("--storage", default="10Gi", show_default=True, help="The results volume's size.")
@click.option("--storage-class", help="A ReadWriteMany storage class (default: the cluster's).")
@click.option("--env-secret", metavar="SECRET", help="A Secret whose keys become env (tokens).")
@click.option("--merge", "merge_job", is_flag=True, help="Print the merge Job instead.")
def render_command(
    profile: str,
    shards: int,
    image: str,
    start_at: str | None,
    start_in: int,
    name: str | None,
    namespace: str | None,
    workers: str | None,
    cpu: str,
    memory: str,
    storage: str,
    storage_class: str | None,
    env_secret: str | None,
    merge_job: bool,
) -> None:
    """Print the manifests of PROFILE run as SHARDS pods of an Indexed Job:
    kubectl apply -f - them, wait for the Job, then apply the merge Job
    (--merge, with the same --start-at)."""
    path = profile  # PROFILE has resolved a shipped profile's name
    with errors_as_exit_codes():
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            fail(f"{profile}: cannot read profile: {exc.strerror or exc}")
        p = parse_profile(text, str(path), _AnyToken())
        now = time.time()
        when = (
            now + start_in
            if start_at is None
            else parse_start_at(Loader(""), "--start-at", start_at)
        )
    if merge_job and start_at is None:
        fail("--merge: expected --start-at TIME, the one the run's manifests were rendered with")
    if p.target.token_env and not env_secret:
        click.echo(
            f"soak: warning: the profile reads its token from ${p.target.token_env}: pass "
            f"--env-secret SECRET (a Secret with the key {p.target.token_env})",
            err=True,
        )
    settings = Settings(
        name=dns_name(name or default_name(p.run.label)),
        image=image,
        shards=shards,
        start_at=when,
        duration=p.duration,
        label=p.run.label,
        profile_text=text,
        namespace=namespace,
        workers=workers,
        cpu=cpu,
        memory=memory,
        storage=storage,
        storage_class=storage_class,
        env_secret=env_secret,
        lead=max(0.0, when - now),
    )
    if merge_job:
        header = (
            f"soak merge of run {settings.run_id} ({shards} shards); apply once\n"
            f"  kubectl wait --for=condition=complete job/{settings.name} has returned"
        )
        click.echo(render([merge_manifest(settings)], header), nl=False)
        return
    header = (
        f"soak run of {Path(path).name} as {shards} shards, starting at {settings.start_text}\n"
        f"results: /results/{settings.run_id} on the claim {settings.name}-results\n"
        f"needs Kubernetes {MIN_VERSION}+; then: soak k8s render ... --merge "
        f"--start-at={settings.start_text}"
    )
    click.echo(render(run_manifests(settings), header), nl=False)
