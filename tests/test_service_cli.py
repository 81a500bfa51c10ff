"""CLI error paths of health, credentials, hosts and new-device's cluster options that need
no cluster: one `error: ...` line and the documented exit code (subprocess, as a user)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_otactl


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """No kubeconfig anywhere: HOME without ~/.kube, KUBECONFIG unset."""
    return {"OTACTL_GENERATED": str(tmp_path / "gen"), "HOME": str(tmp_path), "KUBECONFIG": ""}


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["health", "directr"], 2, "error: unknown service directr (known: app, campaigner,"),
        (["health"], 2, "error: no cluster configured"),
        (["credentials", "--kubeconfig", "/nonexistent"], 2, "kubeconfig not found"),
        (["hosts", "--kubeconfig", "/nonexistent"], 2, "kubeconfig not found"),
        (["new-device", "kiosk"], 2, "(or --no-register: bundles only)"),
        (["new-device", "--count", "2", "--prefix", "p", "--push", "root@h"], 2,
         "--push goes with a single NAME"),
        (["new-device", "kiosk", "--push", "root@@h"], 2, "--push root@@h: expected"),
    ],
)  # fmt: skip
def test_one_line_errors(env: dict[str, str], args: list[str], code: int, words: str) -> None:
    assert run_otactl("new-server", env=env).returncode == 0
    proc = run_otactl(*args, env=env)
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.startswith("error: ") and words in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    # Refused before any bundle was made.
    devices = Path(env["OTACTL_GENERATED"]) / "ota-ce.example.com" / "devices"
    assert not (devices / "manifest.jsonl").exists()
