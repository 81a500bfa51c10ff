"""When the installation's Lease (otactl.lease) counts as held, and when its holder is gone.
The Lease itself, two `up` at once and a take-over are in tests/integration/test_deploy.py."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess

from otactl.lease import HOLDER_ANNOTATION, stale_reason
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
