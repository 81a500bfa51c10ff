"""The progress view of `up` and `down`: heartbeats and the API server's state are shown,
on a terminal (live table) and in log mode (one line each, repeated heartbeats too)."""

from __future__ import annotations

import time

import pytest
from rich.console import Console

from otactl.cli import deploy_cmd
from otactl.deploy import Phase
from otactl.wait import Waiting


def heartbeat(waited: float, lost: float | None = None) -> Waiting:
    return Waiting("infra", ("StatefulSet kafka (0/1 ready)",), waited, lost, time.time())


def test_log_mode_repeats_heartbeats_and_says_when_the_api_server_is_lost(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(deploy_cmd, "is_tty", lambda: False)
    view = deploy_cmd._View()
    view(Phase("infra", "start", "zookeeper, kafka, mysql"))
    view(heartbeat(15))
    view(heartbeat(15))  # the same words again: still shown, it is a heartbeat
    view.api("API server unreachable for 20 s (timed out), retrying")
    view(heartbeat(30, lost=35))
    view.api("API server reachable again after 41 s")
    view.close()
    lines = capsys.readouterr().err.splitlines()
    assert [line.split("] ", 1)[1] for line in lines] == [
        "[infra] running: zookeeper, kafka, mysql",
        "[infra] waiting: still waiting after 15 s for StatefulSet kafka (0/1 ready)",
        "[infra] waiting: still waiting after 15 s for StatefulSet kafka (0/1 ready)",
        "API server unreachable: API server unreachable for 20 s (timed out), retrying",
        "[infra] waiting: still waiting after 30 s for StatefulSet kafka (0/1 ready); "
        "API server unreachable for 35 s, retrying",
        "API server reachable: API server reachable again after 41 s",
    ]


def test_live_view_has_a_row_for_the_api_server_and_the_heartbeat(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(deploy_cmd, "is_tty", lambda: True)
    view = deploy_cmd._View()
    try:
        view(Phase("infra", "start", "zookeeper, kafka, mysql"))
        view(heartbeat(30, lost=35))
        view.api("API server unreachable for 35 s (timed out), retrying")
        console = Console(record=True, width=200)
        console.print(view._table())
    finally:
        view.close()
    text = console.export_text()
    assert "still waiting after 30 s for StatefulSet kafka" in text
    rows = [line.split() for line in text.splitlines()]
    assert ["API", "server", "unreachable", "API", "server", "unreachable", "for", "35", "s",
            "(timed", "out),", "retrying"] in rows  # fmt: skip
