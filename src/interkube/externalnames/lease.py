"""Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it.

Replicas of the controller share one Lease; the one named in ``holderIdentity`` acts, the others
watch the record. A follower does not compare clocks with the holder: it notes when it *saw* the
record change (holder, renewTime or resourceVersion), and takes the Lease over when it has seen
no change for ``leaseDurationSeconds``. Every write carries the resourceVersion read, so two
replicas taking over at once cannot both win (the loser gets 409 Conflict). A leader that cannot
renew for two thirds of the duration stops acting before anyone may take over; one that shuts
down releases the Lease (empty holder) so that a follower takes over at once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any

from interkube.errors import KubeError
from interkube.externalnames.target import TargetApi

log = logging.getLogger("interkube.externalnames")


def micro_time(at: dt.datetime | None = None) -> str:
    """A MicroTime as the API writes it."""
    return (at or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElection:
    """Holds (or waits for) one Lease; ``on_change(leading)`` is called whenever that changes."""

    def __init__(self, api: TargetApi, namespace: str, name: str, identity: str,
                 on_change: Callable[[bool], None], *, duration: float = 15.0) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.on_change = on_change
        self.duration = duration
        self.renew_every = duration / 3
        self.retry_every = duration / 5
        #: A leader that has not renewed for this long stops acting (before a follower may take over).
        self.renew_deadline = duration * 2 / 3
        self.leading = False
        self._observed: tuple[str, str, str] | None = None
        self._observed_at = 0.0
        self._renewed_at = 0.0
        self._logged_failure = False

    @property
    def where(self) -> str:
        return f"lease {self.namespace}/{self.name}"

    def _set(self, leading: bool) -> None:
        if leading != self.leading:
            self.leading = leading
            log.info("externalnames: %s %s %s", self.identity, "now holds" if leading else "no longer holds",
                     self.where)
            self.on_change(leading)

    async def run(self) -> None:
        """Try to acquire and renew, forever (cancel to stop; then call :meth:`release`)."""
        while True:
            try:
                await self._try()
                self._logged_failure = False
            except (KubeError, OSError, ValueError) as exc:
                if not self._logged_failure:
                    log.warning("externalnames: %s: %s", self.where, exc)
                    self._logged_failure = True
            except Exception as exc:  # an HTTP failure (httpx2 errors) or a malformed Lease
                if not self._logged_failure:
                    log.warning("externalnames: %s: %s: %s", self.where, type(exc).__name__, exc)
                    self._logged_failure = True
            if self.leading and time.monotonic() - self._renewed_at > self.renew_deadline:
                log.warning("externalnames: could not renew %s for %.0fs; stepping down", self.where,
                            self.renew_deadline)
                self._set(False)
            await asyncio.sleep(self.renew_every if self.leading else self.retry_every)

    def _record(self, holder: str, transitions: int, acquired: str) -> dict[str, Any]:
        return {"holderIdentity": holder, "leaseDurationSeconds": max(1, round(self.duration)),
                "acquireTime": acquired, "renewTime": micro_time(), "leaseTransitions": transitions}

    async def _try(self) -> None:
        lease = await self.api.get_lease(self.namespace, self.name)
        now = time.monotonic()
        if lease is None:
            await self.api.create_lease(self.namespace, {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._record(self.identity, 0, micro_time())})
            self._renewed_at = now
            self._set(True)
            return
        spec = lease.get("spec") or {}
        meta = lease.get("metadata") or {}
        holder = str(spec.get("holderIdentity") or "")
        seen = (holder, str(spec.get("renewTime") or ""), str(meta.get("resourceVersion") or ""))
        if seen != self._observed:
            self._observed, self._observed_at = seen, now
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder == self.identity:
            spec = self._record(self.identity, transitions, str(spec.get("acquireTime") or micro_time()))
        elif not holder or now - self._observed_at >= float(spec.get("leaseDurationSeconds") or self.duration):
            spec = self._record(self.identity, transitions + 1, micro_time())
        else:
            self._set(False)
            return
        await self.api.replace_lease(self.namespace, self.name, {**lease, "spec": spec})
        self._renewed_at = now
        self._set(True)

    async def release(self) -> None:
        """Give the Lease up (a follower takes over at its next try); errors only logged."""
        if not self.leading:
            return
        self._set(False)
        try:
            lease = await self.api.get_lease(self.namespace, self.name)
            if lease is not None and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                spec = {**lease["spec"], "holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": micro_time()}
                await self.api.replace_lease(self.namespace, self.name, {**lease, "spec": spec})
        except Exception as exc:  # shutting down: the Lease then expires on its own
            log.warning("externalnames: could not release %s: %s", self.where, exc)
