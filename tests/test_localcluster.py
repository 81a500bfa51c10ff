"""Local cluster pieces that need no running cluster: binaries lookup, PKI, stand-in knobs."""

from __future__ import annotations

import ipaddress
import json
import sys
from pathlib import Path

import pytest

from otactl import localcluster
from otactl.errors import LocalClusterError

ROOT = Path(__file__).resolve().parent.parent


def test_missing_binaries_point_at_build_sh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTACTL_LOCAL_CLUSTER_BIN", str(tmp_path / "nothing"))
    with pytest.raises(LocalClusterError, match=r"contrib/local-cluster/build\.sh"):
        localcluster.find_bin_dir()


def test_pinned_release_is_read_from_go_mod() -> None:
    release = localcluster.pinned_release()
    assert release is not None and release.startswith("v1.")


def test_pki_modes_and_profiles(tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    pki = localcluster._make_pki(tmp_path / "pki")
    assert (pki.dir.stat().st_mode & 0o777) == 0o700
    for key in (pki.ca_key, pki.server_key, pki.admin_key, pki.sa_key):
        assert (key.stat().st_mode & 0o777) == 0o600, key
    ca = x509.load_pem_x509_certificate(pki.ca_crt.read_bytes())
    server = x509.load_pem_x509_certificate(pki.server_crt.read_bytes())
    admin = x509.load_pem_x509_certificate(pki.admin_crt.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    sans = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in sans.get_values_for_type(x509.IPAddress)
    assert "kubernetes.default.svc" in sans.get_values_for_type(x509.DNSName)
    eku = server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    # The admin identity is in system:masters: RBAC lets it do everything.
    org = admin.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
    assert org == "system:masters"
    assert admin.issuer == ca.subject
    assert server.not_valid_after_utc.tzinfo is not None


def test_kubeconfig_embeds_credentials(tmp_path: Path) -> None:
    pki = localcluster._make_pki(tmp_path / "pki")
    cfg = json.loads(localcluster._kubeconfig(pki, "https://127.0.0.1:16443"))
    assert cfg["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:16443"
    assert cfg["users"][0]["user"]["client-key-data"]


def test_standin_knobs_merge_and_reject_unknown() -> None:
    sys.path.insert(0, str(ROOT / "contrib" / "local-cluster" / "standin"))
    try:
        import standin
    finally:
        sys.path.pop(0)
    knobs = standin._merge_knobs(standin.DEFAULT_KNOBS, {"warmup_seconds": {"director": 5}})
    assert knobs["warmup_seconds"] == {"*": 0, "director": 5}
    with pytest.raises(ValueError, match="unknown knobs"):
        standin._merge_knobs(standin.DEFAULT_KNOBS, {"warmup": 1})
    with pytest.raises(ValueError):
        standin._merge_knobs(standin.DEFAULT_KNOBS, {"bursts": {"app": {"count": -1}}})


def test_up_refuses_in_one_line_when_a_standin_package_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As after a `pip install` that did not bring the stand-in's packages: nothing starts."""
    hide = tmp_path / "hide"
    hide.mkdir()
    # Python runs sitecustomize at start: `kubernetes` is then not importable (find_spec: None).
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['kubernetes'] = None\n")
    monkeypatch.setenv("PYTHONPATH", str(hide))
    state_dir = tmp_path / "generated" / "local"
    opts = localcluster.ClusterOptions(state_dir, api_port=0, control_port=0)
    with pytest.raises(LocalClusterError) as e:
        localcluster.up(opts)
    assert str(e.value) == (
        "the local cluster's OTA services stand-in needs the Python packages kubernetes "
        "(reinstall otactl: pip install .)"
    )
    assert not (state_dir / "state.json").exists()


def test_standin_key_knobs() -> None:
    sys.path.insert(0, str(ROOT / "contrib" / "local-cluster" / "standin"))
    try:
        import standin
    finally:
        sys.path.pop(0)
    assert standin.DEFAULT_KNOBS["user_repo_key_type"] == "RSA"  # ota-tuf's KeyType.default
    knobs = standin._merge_knobs(
        standin.DEFAULT_KNOBS, {"user_repo_key_type": "ED25519", "keygen_error": "E|boom"}
    )
    assert (knobs["user_repo_key_type"], knobs["keygen_error"]) == ("ED25519", "E|boom")
    assert standin._merge_knobs(knobs, {"keygen_error": None})["keygen_error"] is None
    with pytest.raises(ValueError, match="user_repo_key_type must be one of"):
        standin._merge_knobs(standin.DEFAULT_KNOBS, {"user_repo_key_type": "DSA"})
