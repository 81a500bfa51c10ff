"""What one run of `up` or `down` shares: its options and result, the events it reports
(phases, changes, waits), the overall deadline, and the phase reporter the steps use."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from otactl.config import Values
from otactl.wait import Change, Target, Waiting, wait_ready

if TYPE_CHECKING:
    from otactl.deploy.apply import _Applier
    from otactl.kube import Cluster


@dataclass(frozen=True)
class Phase:
    """A phase started, finished or was skipped (a line in the live view)."""

    name: str
    status: str  # "start", "done", "skip"
    detail: str = ""
    seen_at: float = 0.0


Event = Phase | Change | Waiting
Report = Callable[[Event], None]


@dataclass
class UpOptions:
    timeout: float = 1800.0
    prune: bool = False
    dry_run: bool = False


@dataclass
class UpResult:
    changed: list[str] = field(default_factory=list)
    unchanged: int = 0
    pruned: list[str] = field(default_factory=list)
    diff: str = ""
    gateway_url: str = ""
    credentials_zip: Path | None = None
    noticed: dict[str, float] = field(default_factory=dict)
    phase_seconds: dict[str, float] = field(default_factory=dict)


def plural(n: int, noun: str) -> str:
    """`1 object`, `2 objects`."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _quiet(_event: Event) -> None:
    pass


class _Deadline:
    """The overall --timeout, capped per phase by the values' per-phase defaults."""

    def __init__(self, total: float) -> None:
        self.end = time.monotonic() + total

    def phase(self, default: float) -> float:
        return max(1.0, min(default, self.end - time.monotonic()))


@dataclass
class Run:
    """One `up`: the cluster, the values, what it reports and records, and its deadline."""

    cluster: Cluster
    values: Values
    server_dir: Path
    opts: UpOptions
    report: Report
    result: UpResult
    deadline: _Deadline
    applier: _Applier

    def phase(self, name: str, detail: str = "") -> Callable[[str], None]:
        start = time.monotonic()
        self.report(Phase(name, "start", detail, time.time()))

        def done(outcome: str = "") -> None:
            self.result.phase_seconds[name] = time.monotonic() - start
            self.report(Phase(name, "done", outcome, time.time()))

        return done

    def changed_text(self, changed: list[str]) -> str:
        """How many objects a phase changed, or would change in a dry run."""
        n = plural(len(changed), "object")
        return f"{n} would change" if self.opts.dry_run else f"{n} changed"

    def waited(self, targets: list[Target], timeout: float, name: str) -> None:
        noticed = wait_ready(self.cluster, targets, timeout, self.report, name)
        self.result.noticed.update({str(k): v for k, v in noticed.items()})


def _hold_installation(
    cluster: Cluster, namespace: str, report: Report, held: contextlib.ExitStack
) -> None:
    """Take the Lease that keeps a second `up` or `down` out while this one runs (exit 14);
    `held` releases it."""
    from otactl import lease

    report(Phase("lock", "start", f"Lease {namespace}/{lease.NAME}", time.time()))
    took: list[str] = []
    held.enter_context(lease.holding(cluster, namespace, took.append))
    report(Phase("lock", "done", took[0] if took else "held", time.time()))
