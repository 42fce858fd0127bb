"""``interkube webhook`` as a process, spoken to directly over HTTPS: answers to good and bad
reviews, metrics, the certificate re-read when it changes, the lameduck, flag errors."""

from __future__ import annotations

import base64
import functools
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from cryptography import x509

from interkube.tlsutil import certs
from interkube.webhook import mutate
from testkit.waiting import wait_until
from testkit.webhook import LOOPBACK, NAMESERVER, WebhookProcess

POD = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0", "namespace": "shop"},
       "spec": {"containers": [{"name": "main", "image": "example"}], "dnsPolicy": "ClusterFirst"}}


def review(obj: Any = POD, *, namespace: str = "shop", kind: str = "Pod", uid: str = "u-1") -> bytes:
    request: dict[str, Any] = {"uid": uid, "kind": {"group": "", "version": "v1", "kind": kind},
                               "namespace": namespace, "operation": "CREATE"}
    if obj is not None:
        request["object"] = obj
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                       "request": request}).encode()


def answer(process: WebhookProcess, body: bytes, path: str = "/mutate") -> dict[str, Any]:
    resp = process.post(body, path)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    out: dict[str, Any] = resp.json()["response"]
    return out


def _logged(process: WebhookProcess, words: str) -> bool:
    return words in process.log()


def patch_of(response: dict[str, Any]) -> list[dict[str, Any]]:
    assert response["patchType"] == "JSONPatch"
    patch: list[dict[str, Any]] = json.loads(base64.b64decode(response["patch"]))
    return patch


def test_a_pod_review_is_answered_with_its_patch(webhook: WebhookProcess) -> None:
    response = answer(webhook, review(uid="abc"))
    assert response["uid"] == "abc" and response["allowed"] is True
    ops = {op["path"]: op["value"] for op in patch_of(response)}
    assert ops["/spec/dnsPolicy"] == "None"
    assert ops["/spec/dnsConfig"]["nameservers"] == [NAMESERVER]
    assert ops["/spec/dnsConfig"]["searches"][-1] == "cluster.all"


def test_malformed_reviews_get_400_with_the_reason(webhook: WebhookProcess) -> None:
    before = webhook.metrics()
    cases = [
        (b"{not json", "application/json", "the body is not JSON"),
        (json.dumps({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview",
                     "request": {"uid": "x"}}).encode(), "application/json", "only admission.k8s.io/v1"),
        (json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}).encode(),
         "application/json", "request is missing"),
        (review(), "text/plain", "Content-Type is 'text/plain'"),
    ]
    for body, content_type, words in cases:
        resp = webhook.post(body, content_type=content_type)
        assert resp.status_code == 400, resp.text
        assert resp.text.startswith("malformed AdmissionReview: ") and words in resp.text, resp.text
    after = webhook.metrics()
    key = 'interkube_webhook_admissions_total{outcome="malformed",reason=""}'
    assert after[key] - before[key] == len(cases)
    # Logged, but one line per minute however many arrive (the rest are counted in the next line).
    wait_until(lambda: "refused a malformed AdmissionReview" in webhook.log(), "the malformed review logged")
    assert webhook.log().count("refused a malformed AdmissionReview") == 1
    # And the server still answers.
    assert answer(webhook, review())["allowed"] is True


def test_reviews_of_other_kinds_or_without_object_are_allowed_unchanged_and_logged(
        webhook: WebhookProcess) -> None:
    for body, words in ((review({"kind": "ConfigMap"}, kind="ConfigMap"), "kind v1 ConfigMap"),
                        (review(None), "the review carries no object")):
        response = answer(webhook, body)
        assert response["allowed"] is True and "patch" not in response
        wait_until(functools.partial(_logged, webhook, f"unchanged: {words}"), f"{words!r} logged")
    counts = webhook.metrics()
    assert counts['interkube_webhook_admissions_total{outcome="unchanged",reason="not-pod"}'] >= 1
    assert counts['interkube_webhook_admissions_total{outcome="unchanged",reason="no-object"}'] >= 1


def test_the_server_refuses_excluded_namespaces_whatever_the_configuration_sends(webhook: WebhookProcess) -> None:
    response = answer(webhook, review({**POD, "metadata": {"name": "x", "namespace": "kube-system"}},
                                      namespace="kube-system"))
    assert "patch" not in response


def test_the_annotation_route_requires_the_opt_in(webhook: WebhookProcess) -> None:
    assert "patch" not in answer(webhook, review(), mutate.ANNOTATED_PATH)
    opted = {**POD, "metadata": {**POD["metadata"], "annotations": {mutate.OPT_IN_KEY: "enabled"}}}
    assert patch_of(answer(webhook, review(opted), mutate.ANNOTATED_PATH))


def test_admissions_are_counted_by_outcome_with_their_latency(webhook: WebhookProcess) -> None:
    before = webhook.metrics()
    for _ in range(3):
        answer(webhook, review())
    after = webhook.metrics()
    injected = 'interkube_webhook_admissions_total{outcome="injected",reason="injected"}'
    assert after[injected] - before[injected] == 3
    count = "interkube_webhook_admission_duration_seconds_count"
    assert after[count] - before[count] == 3
    assert after["interkube_webhook_certificate_expiry_timestamp_seconds"] > 0


def _served_certificate(process: WebhookProcess) -> tuple[x509.Certificate, str | None]:
    ctx = process.ssl_context()
    ctx.set_alpn_protocols(["h2", "http/1.1"])  # what the API server's client offers
    with socket.create_connection((LOOPBACK, process.port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=LOOPBACK) as tls:
        der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der), tls.selected_alpn_protocol()


def test_https_is_offered_as_http_1_1(webhook: WebhookProcess) -> None:
    assert _served_certificate(webhook)[1] == "http/1.1"


def test_a_renewed_certificate_is_served_without_a_restart(tmp_webhook: Callable[..., WebhookProcess]) -> None:
    process = tmp_webhook()
    first, _ = _served_certificate(process)
    assert process.ca is not None
    renewed = certs.issue(process.ca, "webhook", ip_addresses=[LOOPBACK], days=2)
    renewed.save(process.cert, process.key)  # each file renamed into place, as cert-manager's Secret updates
    wait_until(lambda: _served_certificate(process)[0].serial_number == renewed.cert.serial_number,
               "the renewed certificate served", timeout=20)
    assert first.serial_number != renewed.cert.serial_number
    assert process.metrics()["interkube_webhook_certificate_reloads_total"] == 1
    assert answer(process, review())["allowed"] is True
    assert process.pid is not None and "webhook: loaded" in process.log()


def test_sigterm_reports_not_ready_and_answers_through_the_lameduck(
        tmp_webhook: Callable[..., WebhookProcess]) -> None:
    process = tmp_webhook(lameduck="3s")
    assert process.ready() == 200
    assert process.pid is not None
    os.kill(process.pid, signal.SIGTERM)
    wait_until(lambda: process.ready() == 503, "not ready after SIGTERM")
    assert answer(process, review())["allowed"] is True
    proc = process.process._proc
    assert proc is not None
    assert proc.wait(timeout=30) == 0
    assert "webhook: lameduck 3s" in process.log()


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "interkube", "webhook", *args], capture_output=True, text=True,
                          timeout=60)


def test_flag_errors_name_the_flag_and_start_nothing(tmp_path: Any, webhook: WebhookProcess) -> None:
    cert, key = str(webhook.cert), str(webhook.key)
    cases = [
        (["--nameserver", "10.0.0.300"], "interkube webhook: nameserver '10.0.0.300' is not an IP address"),
        (["--nameserver", "10.0.0.1", "--search", "bad_domain"], "search domain 'bad_domain' is not a DNS name"),
        (["--nameserver", "10.0.0.1", "--tls-cert", str(tmp_path / "missing.crt"), "--tls-key", key],
         f"cannot read {tmp_path / 'missing.crt'}"),
        (["--nameserver", "10.0.0.1", "--tls-cert", cert, "--tls-key", key, "--listen", "127.0.0.1"],
         "--listen: '127.0.0.1' has no port"),
        (["--nameserver", "10.0.0.1", "--tls-cert", cert, "--tls-key", key, "--http-listen", "off",
          "--listen", f"{LOOPBACK}:{webhook.port}"], "cannot listen on https://127.0.0.1:"),
    ]
    for args, words in cases:
        done = _run(*args)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        assert words in done.stderr, (args, done.stderr)
    assert _run().returncode == 2  # --nameserver is required (argparse's usage error)
