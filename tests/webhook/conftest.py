"""Fixtures of the webhook tests: the webhook as a process, rendered configurations registered
with the session's kube-apiserver for this test's namespaces only, and namespaces to put Pods in."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import Client
from webhookkit import of_kind, rendered

from testkit.kubeapi import KubeAPI, KubeObjects
from testkit.peerfixtures import _namespace_name
from testkit.webhook import NAMESERVER, WebhookProcess, for_loopback, registered


@pytest.fixture(scope="module")
def webhook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebhookProcess]:
    """One webhook process for a test module, with the default settings plus cluster.all."""
    with WebhookProcess(tmp_path_factory.mktemp("webhook"),
                        ("--nameserver", NAMESERVER, "--search", "cluster.all")) as process:
        yield process


@pytest.fixture
def namespaces(request: pytest.FixtureRequest, kube_api: KubeAPI,
               kube: KubeObjects) -> Iterator[Callable[..., str]]:
    """``namespaces(labels=None)``: a fresh namespace, deleted with its objects after the test."""
    made: list[str] = []

    def make(labels: dict[str, str] | None = None) -> str:
        name = kube.namespace(_namespace_name(request.node.nodeid), labels)
        made.append(name)
        return name

    yield make
    for name in made:
        kube_api.delete_namespace(name)


@pytest.fixture
def register(kube_client: Client) -> Iterator[Callable[..., str]]:
    """``register(process, namespaces, *render_argv)``: the rendered configuration, pointed at the
    process and limited to those namespaces, registered until the test ends; returns its name."""
    with contextlib.ExitStack() as stack:
        def add(process: WebhookProcess, in_namespaces: list[str], *argv: str) -> str:
            config = of_kind(rendered(*argv), "MutatingWebhookConfiguration")[0]
            return stack.enter_context(registered(kube_client, for_loopback(
                config, process.base_url, process.ca_pem, in_namespaces)))

        yield add


@pytest.fixture
def tmp_webhook(tmp_path: Path) -> Iterator[Callable[..., WebhookProcess]]:
    """``tmp_webhook(*args, **kw)``: a webhook process of this test's own (stopped at the end);
    arguments as WebhookProcess's."""
    started: list[WebhookProcess] = []

    def start(*args: str, **kw: Any) -> WebhookProcess:
        process = WebhookProcess(tmp_path / f"webhook-{len(started)}", ("--nameserver", NAMESERVER, *args), **kw)
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()
