"""Failing fast, in words: watch a starting pod and give up with a reason.

KubeSpawner waits ``start_timeout`` for a pod that will never start (an
image that does not exist, a crash loop, a failed mount, no node for it)
and then says "Timeout". This mixin watches the start through KubeSpawner's
own pod and event reflectors (no extra API calls); when
:mod:`aaltohub.kube.failures` says the start has failed for good, it
deletes the pod as KubeSpawner would and raises a message for the user,
with the detail in the hub log. API errors from the start are put into
words by :mod:`aaltohub.kube.api_errors`.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from tornado import web
from traitlets import Bool, Float
from traitlets.config import LoggingConfigurable

from ..spawn import user_error
from . import api_errors, failures, kubespawner_api

#: A failure's cause (kube.failures) -> the cause aaltohub_spawn_failures
#: counts it under (metrics.FAILURE_CAUSES); unlisted causes are "other".
METRIC_CAUSES = {
    "image": "image",
    "crash": "crash",
    "init": "crash",
    "oom": "crash",
    "mount": "mount",
    "no-claim": "mount",
    "no-room": "unschedulable",
    "no-node": "unschedulable",
    "api-quota": "unschedulable",
    "api-timeout": "timeout",
}


@dataclass
class _Attempt:
    """What CourseSpawner knows about the start under way."""

    creating: bool = False  # KubeSpawner asked for the manifest: create is next
    stale: set = field(default_factory=set)  # uids of leftover pods of our name
    pod_seen: bool = False  # this start's pod is in the reflector
    replaced_stale: bool = False  # KubeSpawner met 409 and deleted a leftover
    started: float = field(default_factory=time.monotonic)


class FailFastStartMixin(LoggingConfigurable):
    """For a KubeSpawner: stop waiting as soon as a start cannot succeed."""

    fail_fast = Bool(
        True,
        help="""Stop waiting as soon as Kubernetes reports that the server
        cannot start (image not found, a crash, a failed mount, no node for
        it …), delete the pod and tell the user why, instead of waiting for
        ``start_timeout``. The rules are in ``aaltohub.kube.failures`` and
        docs/kubernetes.md ("When a spawn fails").""",
    ).tag(config=True)

    transient_failure_grace = Float(
        30.0,
        help="""Seconds a start problem that may clear by itself may last
        before the start fails: FailedScheduling (no node has room, or none
        matches) while no cluster autoscaler is adding a node, an image
        download failing with a network or rate-limit error, an NFS mount
        timing out. While an autoscaler scales up (TriggeredScaleUp), only
        ``start_timeout`` applies; problems that cannot clear by themselves
        fail the start at once.""",
    ).tag(config=True)

    failure_check_interval = Float(
        1.0,
        help="""Seconds between two looks at a starting pod's status and
        events (from KubeSpawner's reflectors, no API calls) for a reason
        to give up.""",
    ).tag(config=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._attempt: _Attempt | None = None
        #: Lines for the spawn-pending page (e.g. a leftover pod replaced).
        self.start_notices: list[str] = []

    def start(self):
        # KubeSpawner's start() runs _start() as the future its progress()
        # follows; wrapping that future keeps progress ending with it.
        self._attempt = _Attempt()
        starting = super().start()
        return asyncio.ensure_future(self._start_or_fail(starting))

    async def _start_or_fail(self, starting: asyncio.Future):
        try:
            failure = await self._first_failure(starting)
            if failure is None:
                return await self._started(starting)
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            self._log_failure(failure)
            await self._remove_failed_pod()
            raise user_error(failure.status, failure.message)
        finally:
            if not starting.done():
                starting.cancel()  # JupyterHub gave up (start_timeout, cancel)
            self._attempt = None

    async def _first_failure(self, starting) -> failures.Failure | None:
        """What the pod watch found wrong before the start finished."""
        if not self.fail_fast:
            return None
        watching = asyncio.ensure_future(self._watch_start())
        try:
            await asyncio.wait([starting, watching], return_when="FIRST_COMPLETED")
        finally:
            if not watching.done():
                watching.cancel()
        if starting.done() or watching.cancelled():
            return None
        if watching.exception() is not None:  # a bug here must not fail spawns
            self.log.error("pod watch failed", exc_info=watching.exception())
            return None
        return watching.result()

    async def _watch_start(self) -> failures.Failure:
        watch = failures.StartWatch(self.transient_failure_grace)
        while True:
            await asyncio.sleep(self.failure_check_interval)
            pod = self._own_pod()
            if pod is None:
                continue
            events = [
                e
                for e in self.events
                if (e.get("involvedObject") or {}).get("uid")
                in (None, pod["metadata"].get("uid"))
            ]
            failure = watch.check(pod, events, time.monotonic())
            if failure is not None:
                return await self._with_log(failure)

    def _own_pod(self) -> dict | None:
        """This start's pod as the reflector sees it (not a leftover)."""
        attempt = self._attempt
        if attempt is None or not attempt.creating or self.pod_reflector is None:
            return None
        pod = self.pod_reflector.pods.get(f"{self.namespace}/{self.pod_name}")
        if pod is None or pod["metadata"].get("uid") in attempt.stale:
            return None
        attempt.pod_seen = True
        return pod

    async def _with_log(self, failure: failures.Failure) -> failures.Failure:
        if not failure.log_container:
            return failure
        try:
            text = await asyncio.wait_for(
                self.api.read_namespaced_pod_log(
                    self.pod_name,
                    self.namespace,
                    container=failure.log_container,
                    previous=failure.log_previous,
                    tail_lines=failures.ADMIN_LOG_LINES,
                ),
                self.k8s_api_request_timeout,
            )
        except Exception as e:  # the failure is worth reporting without its log
            self.log.warning(
                "no log of %s/%s container %s (%s %s): the hub needs 'get' on"
                " pods/log to show it",
                self.namespace,
                self.pod_name,
                failure.log_container,
                type(e).__name__,
                getattr(e, "status", ""),
            )
            return failure
        return failure.with_log(text)

    async def _started(self, starting):
        """KubeSpawner's result, or its API error in words."""
        try:
            return await starting
        except Exception as e:
            failure = self._explain(e)
            if failure is None:
                raise
            self._log_failure(failure)
            raise user_error(failure.status, failure.message) from e

    def _explain(self, error: Exception) -> failures.Failure | None:
        attempt = self._attempt or _Attempt()
        if isinstance(error, web.HTTPError):
            return None  # already written for the user (e.g. a refused course)
        created = attempt.pod_seen or self._own_pod() is not None
        if isinstance(error, TimeoutError):
            if attempt.replaced_stale and not created:
                return api_errors.stale_pod_failure(
                    self.namespace, self.pod_name, error
                )
            if not attempt.creating or created:
                return None  # KubeSpawner's own start timeout
        verb, resource = self._api_call(attempt)
        return api_errors.explain_api_error(
            error,
            verb=verb,
            resource=resource,
            namespace=self.namespace,
            server=self.api.api_client.configuration.host,
        )

    def _api_call(self, attempt: _Attempt) -> tuple[str, str]:
        """What KubeSpawner's _start() was asking the API when it failed."""
        if attempt.creating:
            return "create", "pods"
        failed = self._forget_failed_reflectors()
        if failed:
            return "list and watch", failed
        if self.storage_pvc_ensure:
            return "create", "persistentvolumeclaims"
        return "create", "namespaces" if self.enable_user_namespaces else "pods"

    def _forget_failed_reflectors(self) -> str:
        """KubeSpawner keeps a reflector whose first list failed, and later
        spawns wait start_timeout for a pod it never reports. Forget it, so
        the next start lists again; say what it watched."""
        return " and ".join(sorted(kubespawner_api.forget_failed_reflectors(self)))

    def _log_failure(self, failure: failures.Failure) -> None:
        took = time.monotonic() - (self._attempt or _Attempt()).started
        # For the audit record and the failure count (SpawnEventsMixin):
        # the user's message without the container's log lines.
        self.start_failure_cause = METRIC_CAUSES.get(failure.cause, "other")
        first = failure.message.split("\nThe last lines it printed:")[0]
        same = failure.cause == self.start_failure_cause
        self.start_failure_reason = first if same else f"{failure.cause}: {first}"
        self.log.error(
            "spawn user=%s server=%r pod=%s/%s action=start outcome=failed"
            " cause=%s seconds=%.1f detail=%r",
            self.user.name,
            self.name or "",
            self.namespace,
            self.pod_name,
            failure.cause,
            took,
            failure.detail,
        )

    async def _remove_failed_pod(self) -> None:
        # As KubeSpawner cleans up a failed start: stop(now=True). Bounded,
        # so the user hears why at once; JupyterHub calls stop() again
        # after every failed start, which finishes a slow deletion.
        try:
            await asyncio.wait_for(super().stop(now=True), self.k8s_api_request_timeout)
        except Exception as e:
            self.log.warning("failed pod %s not yet deleted: %r", self.pod_name, e)

    async def get_pod_manifest(self):
        attempt = self._attempt
        if attempt is not None and self.pod_reflector is not None:
            # KubeSpawner's _start() asks for the manifest after its
            # reflectors loaded and just before it creates the pod: a pod
            # of our name now is a leftover from an earlier start.
            leftover = self.pod_reflector.pods.get(f"{self.namespace}/{self.pod_name}")
            if leftover is not None:
                attempt.stale.add(leftover["metadata"].get("uid"))
            attempt.creating = True
        return await super().get_pod_manifest()

    async def stop(self, now=False):
        attempt = self._attempt
        ref = f"{self.namespace}/{self.pod_name}"
        pod = self.pod_reflector.pods.get(ref) if self.pod_reflector else None
        uid = pod["metadata"].get("uid") if pod else None
        if attempt and attempt.creating and uid is not None and uid in attempt.stale:
            # Mid-start, KubeSpawner stops a pod it did not create only when
            # creating ours got 409 Conflict: it deletes the leftover of our
            # name and creates ours again.
            attempt.replaced_stale = True
            self.log.warning(
                "spawn user=%s pod=%s action=replace-leftover outcome=deleting",
                self.user.name,
                ref,
            )
            self.start_notices.append(
                "A server of yours from an earlier start was still there; it was"
                " removed, and your new server is starting."
            )
        return await super().stop(now=now)
