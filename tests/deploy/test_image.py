"""The container image (Containerfile, built by scripts/build-image) runs as the rendered
Deployment runs it, and answers.

No container can be started here (no cgroup delegation), so the test does a container runtime's
part by hand: buildah mounts the image's root filesystem; the pod's volumes are mounted on it
(the rendered ConfigMap's Corefile at /etc/interkube, the emptyDir at /tmp) with /proc, /dev
and /sys, and the root is remounted read-only (readOnlyRootFilesystem), all in a mount namespace
of the pod's own; the pod's sysctls are set in a network namespace the test makes (loopback
only); and the image's ENTRYPOINT with the container's args runs there, chrooted, as the pod's
user, with the image's environment. dig asks it from inside that namespace, the probes' URLs
are fetched there, and it is stopped by its PID with SIGTERM, as the kubelet would.

The image is built once per source tree: scripts/build-image reuses an image whose inputs
(Containerfile, build context, base) are unchanged, so after .ci/run's own build the fixture
takes seconds. Cold (no base, no wheels, no layers) it takes about 2.5 minutes; after a source
edit about 30 seconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from interkube.deploy.options import RenderOptions
from interkube.deploy.render import render_server
from interkube.deploy.workload import CONFIG_DIR, COREFILE_KEY, SERVE_ARGS
from testkit.dig import needs_dig, status
from testkit.waiting import wait_until

from deploykit import container, one

REPO = Path(__file__).resolve().parents[2]
BUILD_IMAGE = REPO / "scripts" / "build-image"
TOOLS = ("buildah", "mmdebstrap", "ip", "unshare", "mount")


def _skip_reason() -> str | None:
    if sys.platform != "linux" or os.geteuid() != 0:
        return "needs root: buildah's storage, mount and network namespaces (CI runs as root)"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"missing {', '.join(missing)} (apt-get install buildah mmdebstrap iproute2; .ci/run does)"
    return None


_SKIP = _skip_reason()

pytestmark = [
    pytest.mark.netns,
    needs_dig,
    pytest.mark.skipif(_SKIP is not None, reason=_SKIP or ""),
    # A cold image build (base from Debian's packages, the compiler layer) takes minutes; a
    # warm one, seconds. The rest is bounded by the waits below.
    pytest.mark.timeout(1500),
]

Obj = dict[str, Any]

#: Served from nothing outside the pod: hosts answers, the log plugin prints to stdout.
COREFILE = """\
.:53 {
    errors
    log
    health {
        lameduck 2s
    }
    ready
    prometheus :9153
    hosts {
        192.0.2.10 db.example.internal
    }
    cache 30
}
"""
NAME, ADDRESS = "db.example.internal", "192.0.2.10"


@dataclass(frozen=True)
class Image:
    ref: str          # the tag (what the Deployment names)
    id: str           # what the test mounts, whatever the tag names by then
    compressed_bytes: int
    config: Obj       # the OCI image config's "config": Entrypoint, Cmd, Env, User, WorkingDir


@pytest.fixture(scope="module")
def image() -> Image:
    """localhost/interkube:<version>, built unless an image of the same inputs exists."""
    proc = subprocess.run([sys.executable, str(BUILD_IMAGE), "--json"], capture_output=True, text=True,
                          timeout=1400, check=False)
    if proc.returncode != 0:
        pytest.fail(f"scripts/build-image exited {proc.returncode}:\n{proc.stderr[-6000:]}")
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    inspected = json.loads(subprocess.run(["buildah", "inspect", "--type", "image", summary["id"]],
                                          capture_output=True, text=True, check=True).stdout)
    return Image(ref=summary["image"], id=summary["id"], compressed_bytes=summary["compressed_bytes"],
                 config=inspected["OCIv1"]["config"])


@pytest.fixture(scope="module")
def rootfs(image: Image) -> Iterator[Path]:
    """The image's root filesystem, mounted by buildah (a container of its own, removed after)."""
    name = f"interkube-image-test-{os.getpid()}"
    subprocess.run(["buildah", "from", "--pull=false", "--name", name, image.id], capture_output=True, check=True)
    try:
        mounted = subprocess.run(["buildah", "mount", name], capture_output=True, text=True, check=True)
        yield Path(mounted.stdout.strip())
    finally:
        subprocess.run(["buildah", "umount", name], capture_output=True, check=False)
        subprocess.run(["buildah", "rm", name], capture_output=True, check=False)


def rendered(image: Image) -> list[Obj]:
    return render_server(RenderOptions(corefile_text=COREFILE, image=image.ref, image_pull_policy="Never"))


@contextlib.contextmanager
def network_namespace() -> Iterator[str]:
    """A network namespace of the test's own with loopback up (the pod's), removed afterwards."""
    ns = f"interkube-image-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        yield ns
    finally:
        subprocess.run(["ip", "netns", "delete", ns], check=False)


def in_netns(ns: str, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, timeout=timeout,
                          check=False)


def http_get(ns: str, port: int, path: str) -> tuple[int, str]:
    """GET http://127.0.0.1:PORT/PATH from inside the namespace (as a probe would, on the pod's
    address); (0, error) when nothing answered."""
    code = ("import sys, urllib.request\n"
            "try:\n"
            "    r = urllib.request.urlopen(sys.argv[1], timeout=2)\n"
            "except OSError as exc:\n"
            "    print(0); print(exc); sys.exit()\n"
            "print(r.status); print(r.read().decode())\n")
    out = in_netns(ns, sys.executable, "-c", code, f"http://127.0.0.1:{port}{path}").stdout
    first, _, rest = out.partition("\n")
    return int(first or 0), rest


def _tmpfs_size(quantity: str) -> str:
    """A Kubernetes quantity (16Mi) as tmpfs's size option (16m)."""
    for suffix, unit in (("Ki", "k"), ("Mi", "m"), ("Gi", "g")):
        if quantity.endswith(suffix):
            return quantity[:-len(suffix)] + unit
    return quantity


def volume_mounts(objects: list[Obj], pod: Obj, root: Path, tmp: Path) -> list[str]:
    """Shell lines mounting the container's volumes on the root, as the kubelet would: a
    ConfigMap's items as files in a read-only folder, an emptyDir as a tmpfs. Any other kind
    fails the test (this Corefile needs none)."""
    (c,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    lines = []
    for vm in c["volumeMounts"]:
        volume, target = volumes[vm["name"]], shlex.quote(f"{root}{vm['mountPath']}")
        lines.append(f"mkdir -p {target}")  # a runtime makes missing mount points in the container's layer
        if "configMap" in volume:
            source = volume["configMap"]
            data = one(objects, "ConfigMap", source["name"])["data"]
            folder = tmp / f"volume-{vm['name']}"
            folder.mkdir(mode=0o755)
            for item in source.get("items") or [{"key": k, "path": k} for k in data]:
                (folder / item["path"]).write_text(data[item["key"]])
                (folder / item["path"]).chmod(0o644)
            lines += [f"mount --bind {shlex.quote(str(folder))} {target}", f"mount -o remount,bind,ro {target}"]
        elif "emptyDir" in volume:
            size = volume["emptyDir"].get("sizeLimit")
            options = "mode=1777" + (f",size={_tmpfs_size(size)}" if size else "")
            lines.append(f"mount -t tmpfs -o {options} tmpfs {target}")
        else:
            pytest.fail(f"volume {vm['name']}: {sorted(volume)} is not mounted by this test")
    return lines


def launcher(objects: list[Obj], image: Image, root: Path, tmp: Path) -> tuple[list[str], dict[str, str]]:
    """The command (run inside the network namespace) that starts the Deployment's container
    from the mounted image, and its environment (the image's)."""
    dep = one(objects, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    c = container(dep)
    security = {**pod.get("securityContext", {}), **c.get("securityContext", {})}
    uid, gid = security["runAsUser"], security.get("runAsGroup", 0)
    assert security.get("runAsNonRoot") and uid != 0
    # Kubernetes' rule: command replaces the image's ENTRYPOINT, args its CMD.
    argv = c.get("command") or image.config["Entrypoint"]
    argv = [*argv, *(c.get("args") if "args" in c else image.config.get("Cmd") or [])]
    q = shlex.quote
    r = q(str(root))
    lines = ["set -eu",
             # The root as a mount point of its own in this mount namespace, so that it can be
             # made read-only here without touching buildah's mount outside.
             f"mount --bind {r} {r}",
             *volume_mounts(objects, pod, root, tmp),
             f"mount -t proc proc {r}/proc",
             f"mount -t sysfs -o ro,nosuid,nodev,noexec sysfs {r}/sys",
             f"mount -t tmpfs -o mode=755,size=1m tmpfs {r}/dev",
             *(f"touch {r}/dev/{d} && mount --bind /dev/{d} {r}/dev/{d}"
               for d in ("null", "zero", "full", "random", "urandom", "tty")),
             f"mkdir {r}/dev/shm && mount -t tmpfs -o mode=1777,size=64m tmpfs {r}/dev/shm",
             f"ln -s /proc/self/fd {r}/dev/fd"]
    if security.get("readOnlyRootFilesystem"):
        lines.append(f"mount -o remount,bind,ro {r}")
    # unshare chroots, changes to the working folder, then drops to the pod's user: from root to
    # a non-root UID every capability goes (the container's drop ALL; its NET_BIND_SERVICE would
    # need file capabilities, which allowPrivilegeEscalation: false voids), so port 53 binds
    # only through the pod's sysctl, as in a cluster.
    lines.append(f"exec unshare --root={r} --wd={q(image.config.get('WorkingDir') or '/')} "
                 f"--setgid={gid} --setuid={uid} -- {shlex.join(argv)}")
    script = tmp / "launch.sh"
    script.write_text("\n".join(lines) + "\n")
    env = dict(e.split("=", 1) for e in image.config.get("Env", []))
    ns_cmd = [shutil.which("unshare") or "unshare", "--mount", "--propagation", "private",
              "/bin/sh", str(script)]
    return ns_cmd, env


@dataclass
class Pod:
    netns: str
    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def run_pod(objects: list[Obj], image: Image, root: Path, tmp: Path) -> Iterator[Pod]:
    """The Deployment's container running from the mounted image in a network namespace of its
    own; stopped by its PID (SIGKILL if it outlives the grace period) and the namespace removed
    afterwards, also on failure. Its mounts live in its own mount namespace and go with it."""
    dep = one(objects, "Deployment")
    pod = dep["spec"]["template"]["spec"]
    cmd, env = launcher(objects, image, root, tmp)
    log = tmp / "pod.log"
    with network_namespace() as ns:
        for sysctl in pod.get("securityContext", {}).get("sysctls", []):
            path = "/proc/sys/" + sysctl["name"].replace(".", "/")
            done = in_netns(ns, "sh", "-c", f"echo {shlex.quote(sysctl['value'])} > {path}")
            assert done.returncode == 0, f"sysctl {sysctl}: {done.stderr}"
        with open(log, "wb") as out:
            # ip netns exec, unshare, sh and unshare again each exec the next: this PID is the
            # server's own.
            proc = subprocess.Popen(["ip", "netns", "exec", ns, *cmd], stdout=out, stderr=subprocess.STDOUT,
                                    env=env, stdin=subprocess.DEVNULL)
        running = Pod(ns, proc, log)
        try:
            yield running
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=pod["terminationGracePeriodSeconds"])
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def dig(ns: str, port: int, *args: str) -> str:
    return in_netns(ns, "dig", "@127.0.0.1", "-p", str(port), "+tries=1", "+time=2", *args).stdout


def test_image_metadata(image: Image, rootfs: Path) -> None:
    """What the rendered Deployment relies on: a numeric non-root user (runAsNonRoot checks it
    without /etc/passwd) equal to the Deployment's, the entrypoint and default arguments the
    Deployment's args repeat; the C helper built, nothing of the build left; the size goal."""
    dep = one(rendered(image), "Deployment")
    pod_security = dep["spec"]["template"]["spec"]["securityContext"]
    assert image.config["User"] == f"{pod_security['runAsUser']}:{pod_security['runAsGroup']}"
    assert image.config["Entrypoint"] == ["interkube"]
    assert image.config["Cmd"] == SERVE_ARGS == container(dep)["args"]
    assert container(dep)["image"] == image.ref
    site = rootfs / "opt/interkube/lib/python3.11/site-packages"
    assert list((site / "interkube").glob("_udpfast.*.so")), "the C helper was not built into the image"
    assert list((site / "uvloop").glob("loop.*.so")), "uvloop (the fast extra) is not in the image"
    leftovers = [p for p in ("usr/bin/gcc", "opt/interkube/bin/pip", "build") if (rootfs / p).exists()]
    leftovers += [p.name for p in site.glob("pip*")] + [p.name for p in site.glob("setuptools*")]
    assert not leftovers, f"build tools left in the final image: {leftovers}"
    assert (rootfs / CONFIG_DIR.lstrip("/")).is_dir(), f"{CONFIG_DIR}, where the ConfigMap is mounted, is missing"
    print(f"{image.ref}: {image.compressed_bytes / 1e6:.1f} MB compressed")
    assert image.compressed_bytes < 80e6, f"the image is {image.compressed_bytes / 1e6:.1f} MB compressed (goal < 80)"


def test_image_serves_as_the_deployment_runs_it(image: Image, rootfs: Path, tmp_path: Path) -> None:
    objects = rendered(image)
    dep = one(objects, "Deployment")
    c = container(dep)
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert f"{CONFIG_DIR}/{COREFILE_KEY}" in c["args"] and CONFIG_DIR in mounts
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    ready, live = c["readinessProbe"]["httpGet"], c["livenessProbe"]["httpGet"]

    with run_pod(objects, image, rootfs, tmp_path) as pod:
        def is_ready() -> bool:
            return http_get(pod.netns, ready["port"], ready["path"])[0] == 200

        wait_until(is_ready, lambda: f"{ready['path']} on port {ready['port']} answered 200; output:\n{pod.output()}",
                   60, every=0.2, alive=lambda: pod.proc.poll() is None)

        for transport in ("+notcp", "+tcp"):
            out = dig(pod.netns, ports["dns"], transport, NAME, "A")
            assert status(out) == "NOERROR", out
            assert f"{NAME}.\t" in out and ADDRESS in out, out
        assert http_get(pod.netns, live["port"], live["path"])[0] == 200
        code, metrics = http_get(pod.netns, ports["metrics"], "/metrics")
        assert code == 200 and "interkube_dns_requests_total{" in metrics, metrics[:500]

        # The server itself: the image's entrypoint with the Deployment's args, as the pod's
        # user, with the C helper and uvloop loaded from the image.
        proc_dir = Path(f"/proc/{pod.proc.pid}")
        cmdline = (proc_dir / "cmdline").read_bytes().split(b"\0")[:-1]
        assert [a.decode() for a in cmdline[1:]] == ["/opt/interkube/bin/interkube", *SERVE_ARGS], cmdline
        uid_line = next(line for line in (proc_dir / "status").read_text().splitlines() if line.startswith("Uid:"))
        run_as = dep["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
        assert uid_line.split()[1:] == [str(run_as)] * 4, uid_line
        maps = (proc_dir / "maps").read_text()
        assert "/opt/interkube/lib/python3.11/site-packages/interkube/_udpfast" in maps
        assert "/site-packages/uvloop/" in maps

        # SIGTERM as the kubelet sends it: lameduck, then a clean exit, within the grace period,
        # on the read-only root (nothing to write on the way out either).
        pod.proc.send_signal(signal.SIGTERM)
        assert pod.proc.wait(timeout=dep["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]) == 0, \
            pod.output()
    output = pod.output()
    assert NAME in output, f"the log plugin's lines are not on stdout:\n{output}"
    for trouble in ("Traceback", "Read-only file system", "Permission denied", "[ERROR]"):
        assert trouble not in output, output
