"""Values: layering, validation errors (one line, exit 2, file and line), config show."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from otactl.config import load_values
from otactl.errors import ConfigError
from tests.conftest import run_otactl


def test_defaults_validate_without_any_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("OTACTL_CONFIG", raising=False)
    values = load_values()
    assert values.gateway.service_type == "NodePort"
    assert values.gateway.node_port == 30443
    assert values.services.treehub.storage == "20Gi"


def test_layers_file_over_defaults_and_set_over_file(tmp_path: Path):
    user = tmp_path / "mine.yaml"
    user.write_text("namespace: ota\ngateway:\n  replicas: 3\n  extra_ips: [192.0.2.7]\n")
    values = load_values(user, ["gateway.replicas=5"])
    assert values.namespace == "ota"  # from the file
    assert values.gateway.replicas == 5  # --set wins over the file
    assert values.gateway.extra_ips == ["192.0.2.7"]
    assert values.gateway.service_type == "NodePort"  # untouched default survives the merge


def test_env_var_then_local_file_are_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "otactl.yaml").write_text("namespace: from-local\n")
    monkeypatch.delenv("OTACTL_CONFIG", raising=False)
    assert load_values().namespace == "from-local"
    other = tmp_path / "other.yaml"
    other.write_text("namespace: from-env\n")
    monkeypatch.setenv("OTACTL_CONFIG", str(other))
    assert load_values().namespace == "from-env"


def test_the_profile_can_come_from_the_environment(tmp_path: Path) -> None:
    # what `make demo` sets, so that later commands keep the demo's NodePorts
    env = {"OTACTL_PROFILE": "local"}
    shown = run_otactl("config", "show", "-o", "json", cwd=tmp_path, env=env)
    assert shown.returncode == 0, shown.stderr
    proxy = json.loads(shown.stdout)["reverse_proxy"]
    assert (proxy["service_type"], proxy["node_port"]) == ("NodePort", 30444)
    flag = run_otactl("config", "show", "-o", "json", "--profile", "gke", cwd=tmp_path, env=env)
    assert json.loads(flag.stdout)["reverse_proxy"]["service_type"] == "LoadBalancer"
    bad = run_otactl("config", "show", cwd=tmp_path, env={"OTACTL_PROFILE": "nope"})
    assert bad.returncode == 2
    assert bad.stderr == "error: OTACTL_PROFILE=nope: unknown profile (known: gke, local)\n"


def test_gke_profile_uses_load_balancers():
    values = load_values(profile="gke")
    assert values.gateway.service_type == "LoadBalancer"
    assert values.reverse_proxy.service_type == "LoadBalancer"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("gateway:\n  replicas: 2\n  bogus: 1\n", r"mine.yaml:3: gateway.bogus: unknown key"),
        ("pki:\n  ca_days: soon\n", r"mine.yaml:2: pki.ca_days: Input should be a valid integer"),
        ("gateway:\n  replicas: [2\n", r"mine.yaml:3: malformed YAML"),
        ("- a\n- b\n", r"mine.yaml: values must be a mapping"),
        (
            "infra:\n  kafka:\n    image: confluentinc/cp-kafka\n",
            "mine.yaml:3: infra.kafka.image: image must be pinned",
        ),
        (
            "gateway:\n  node_port: 80\n",
            "mine.yaml:2: gateway.node_port: Input should be greater than or equal to 30000",
        ),
    ],
)
def test_bad_user_file_names_key_file_and_line(tmp_path: Path, text: str, expected: str):
    user = tmp_path / "mine.yaml"
    user.write_text(text)
    with pytest.raises(ConfigError, match=expected.replace("[", r"\[")):
        load_values(user)


def test_cli_bad_set_is_one_line_exit_2(tmp_path: Path):
    proc = run_otactl("--generated", str(tmp_path), "render", "--set", "gateway.service_type=Nope")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: --set gateway.service_type=Nope: gateway.service_type:")
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "templates").exists()  # nothing written on bad input


def test_cli_missing_config_file_is_one_line(tmp_path: Path):
    proc = run_otactl("--config", str(tmp_path / "nope.yaml"), "config", "show")
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == f"error: {tmp_path / 'nope.yaml'}: cannot read values file: No such file or directory"
    )


def test_cli_malformed_set_expression(tmp_path: Path):
    proc = run_otactl("config", "show", "--set", "gateway.replicas")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: --set gateway.replicas: expected KEY.PATH=VALUE"


def test_config_show_json_merges_and_masks_secrets(tmp_path: Path):
    gen = tmp_path / "gen"
    run_otactl("--generated", str(gen), "render", check=True)
    secrets_file = gen / "ota-ce.example.com" / "secrets.yaml"
    kept = secrets_file.read_text()
    proc = run_otactl(
        "--generated", str(gen), "config", "show", "-o", "json", "--set", "namespace=x1"
    )
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    assert shown["namespace"] == "x1"
    assert shown["secrets"]["file"].endswith("secrets.yaml")
    import yaml

    for key, value in yaml.safe_load(kept).items():
        for secret in value.values() if isinstance(value, dict) else [value]:
            assert secret not in proc.stdout, f"{key} leaked into config show"
