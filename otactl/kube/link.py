"""Whether the API server answers, shared by every thread that talks to it: since when it
has not, and the notices a user sees while it is lost ("API server unreachable for 40 s")."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable

from otactl.errors import ClusterUnreachable
from otactl.retry import heartbeat_seconds

NOTICE_AFTER = 2.0


def _clock_time(wall: float) -> str:
    return dt.datetime.fromtimestamp(wall, dt.UTC).strftime("%H:%M:%S UTC")


class Link:
    """Whether the API server answers, and since when it has not (shared by every thread
    that talks to it). Notices go to `notify`: the first once it has not answered for
    NOTICE_AFTER seconds (a single dropped connection is not news), then one every heartbeat
    while it lasts, and one when the API server answers again."""

    def __init__(self, server: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.server = server
        self.clock = clock
        self.notify: Callable[[str], None] | None = None
        self._lock = threading.Lock()
        self._lost: tuple[float, float] | None = None  # (monotonic, wall) of the first failure
        self._cause = ""
        self._last_ok = float("-inf")
        self._noticed: float | None = None

    def answered(self) -> None:
        """Any answer (whatever its status) proves the API server is reachable."""
        with self._lock:
            self._last_ok = self.clock()
            if self._lost is None:
                return
            gone = self._last_ok - self._lost[0]
            told, self._lost, self._noticed = self._noticed is not None, None, None
        if told and self.notify:
            self.notify(f"API server reachable again after {gone:.0f} s")

    def failed(
        self, cause: str, started: float, silent_since: float | None = None
    ) -> ClusterUnreachable:
        """Record a request sent at `started` (monotonic) that got no answer: `cause`. A
        failure older than the last answer is a leftover of a healed outage, not a new one.
        `silent_since`: the probe of a watch that has been silent since then; the outage
        began then (or at the last answer, if later)."""
        now = self.clock()
        with self._lock:
            stale = started < self._last_ok
            if silent_since is not None:
                started, stale = max(silent_since, self._last_ok), False
            if self._lost is None and not stale:
                self._lost = (started, time.time() - (now - started))
                self._noticed = None
            self._cause = cause
            gone = now - self._lost[0] if self._lost else 0.0
            due = (
                self._lost is not None
                and gone >= NOTICE_AFTER
                and (self._noticed is None or now - self._noticed >= heartbeat_seconds())
            )
            if due:
                self._noticed = now
        if due and self.notify:
            self.notify(f"API server unreachable for {gone:.0f} s ({cause}), retrying")
        return ClusterUnreachable(self.message(cause))

    def ever_answered(self) -> bool:
        """Whether the API server has answered any request on this link."""
        with self._lock:
            return self._last_ok != float("-inf")

    def unreachable_for(self) -> float | None:
        """Seconds since the API server stopped answering, or None while it answers."""
        with self._lock:
            return None if self._lost is None else self.clock() - self._lost[0]

    def message(self, cause: str | None = None) -> str:
        """`cannot reach the Kubernetes API at URL, unreachable since T (N s): cause`."""
        with self._lock:
            lost, cause = self._lost, cause or self._cause
        text = f"cannot reach the Kubernetes API at {self.server}"
        if lost is not None:
            gone = self.clock() - lost[0]
            text += f", unreachable since {_clock_time(lost[1])}"
            text += f" ({gone:.0f} s)" if gone >= 1 else ""
        return f"{text}: {cause}"
