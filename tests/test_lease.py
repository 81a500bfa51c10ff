"""When the installation's Lease (otactl.lease) counts as held, and when its holder is gone.
The Lease itself, two `up` at once and a take-over are in tests/integration/test_deploy.py."""

from __future__ import annotations

import copy
import datetime as dt
import os
import socket
import subprocess
from typing import Any

import pytest

from otactl.errors import InstallationBusy
from otactl.lease import HOLDER_ANNOTATION, _Lease, stale_reason
from otactl.locks import Holder

NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)


def lease(holder: Holder | None, renewed: dt.datetime | None, identity: str = "h/1") -> dict:
    annotations = {HOLDER_ANNOTATION: holder.to_json()} if holder else {}
    spec = {"holderIdentity": identity, "leaseDurationSeconds": 60}
    if renewed is not None:
        spec["renewTime"] = renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {"metadata": {"annotations": annotations}, "spec": spec}


def exited_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_live_holder_keeps_the_lease() -> None:
    me = Holder(socket.gethostname(), os.getpid(), "otactl up", NOW.isoformat())
    assert stale_reason(lease(me, NOW - dt.timedelta(seconds=59)), NOW) is None
    # another host's process cannot be checked: only expiry frees it
    there = Holder("elsewhere", 1, "otactl up", NOW.isoformat())
    assert stale_reason(lease(there, NOW - dt.timedelta(seconds=30)), NOW) is None


def test_a_gone_holder_is_stale() -> None:
    there = Holder("elsewhere", 1, "otactl up", NOW.isoformat())
    expired = stale_reason(lease(there, NOW - dt.timedelta(seconds=61)), NOW)
    assert expired == "not renewed for over 60 s"
    dead = Holder(socket.gethostname(), exited_pid(), "otactl up", NOW.isoformat())
    assert stale_reason(lease(dead, NOW), NOW) == f"process {dead.pid} is gone"
    assert stale_reason(lease(None, NOW, identity=""), NOW) == "released"
    assert stale_reason(lease(None, None), NOW) == "not renewed for over 60 s"


def test_the_holder_is_described_for_a_user() -> None:
    holder = Holder("build-7", 4242, "otactl up --timeout 600", "2026-11-30T10:42:03+00:00")
    assert Holder.from_json(holder.to_json()) == holder
    assert holder.describe() == (
        "`otactl up --timeout 600` (pid 4242 on build-7, since 2026-11-30 10:42:03 UTC)"
    )
    assert Holder.from_json("not json") is None


class _ApiServer:
    """The Lease as kube-apiserver keeps it: a PUT naming a resourceVersion that is no
    longer the stored one is a 409 (optimistic concurrency); `Cluster.replace` returns None
    for it. A PUT without one would be applied unconditionally, as the real server does."""

    def __init__(self, stored: dict[str, Any]) -> None:
        self.stored = stored
        self.stale_reads: list[dict[str, Any]] = []

    def get(self, kind: str, namespace: str | None, name: str, **_: Any) -> dict[str, Any]:
        if kind == "Namespace":
            return {"metadata": {"name": name}}
        return self.stale_reads.pop(0) if self.stale_reads else copy.deepcopy(self.stored)

    def replace(self, obj: dict[str, Any], **_: Any) -> dict[str, Any] | None:
        wanted = obj["metadata"].get("resourceVersion")
        current = self.stored["metadata"]["resourceVersion"]
        if wanted is not None and wanted != current:
            return None
        self.stored = copy.deepcopy(obj)
        self.stored["metadata"]["resourceVersion"] = str(int(current) + 1)
        return copy.deepcopy(self.stored)


def test_two_runs_taking_over_the_same_stale_lease_cannot_both_win() -> None:
    dead = Holder(socket.gethostname(), exited_pid(), "otactl up", NOW.isoformat())
    stale = lease(dead, dt.datetime.now(dt.UTC))
    stale["metadata"]["resourceVersion"] = "7"
    server = _ApiServer(copy.deepcopy(stale))
    me = Holder(socket.gethostname(), os.getpid(), "otactl up", NOW.isoformat())
    told: list[str] = []
    first = _Lease(server, "ota", me)  # type: ignore[arg-type]
    assert first.acquire(told.append)
    assert told == [
        f"took over Lease ota/otactl from {dead.describe()}: process {dead.pid} is gone"
    ]
    # The second run read the lease before the first one took it over.
    server.stale_reads.append(copy.deepcopy(stale))
    other = Holder("ci-runner-2", 4242, "otactl down", NOW.isoformat())
    second = _Lease(server, "ota", other)  # type: ignore[arg-type]
    with pytest.raises(
        InstallationBusy, match=r"another operation is in progress on namespace ota"
    ):
        second.acquire(told.append)
    assert server.stored["spec"]["holderIdentity"] == first.identity
