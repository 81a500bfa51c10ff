"""Edges of the imported fleet CA's CRLs and of the gateway-tls files (mutants of pki that
the broader tests of test_pki.py let through): the exact refusals, the nextUpdate boundary,
the device CA's own CRL made on a refresh when crl.pem is gone."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from otactl import pki
from otactl.errors import ConfigError, PkiError
from tests.test_pki import SERVER, _cert, _crl, fleet_ca, make_server  # noqa: F401 (fixture)

FleetCa = dict[str, Path]


def test_gateway_tls_secret_keys_are_what_nginx_mounts(tmp_path: Path) -> None:
    files = make_server(tmp_path).files
    assert files.tls_secret_files() == {
        "server.chain.pem": files.server_chain,
        "server.key": files.server_key,
        "ca.crt": files.device_ca,
        "crl.pem": files.crl,
    }


def imported(tmp_path: Path, fleet: FleetCa) -> pki.ServerPki:
    return make_server(
        tmp_path, device_ca_cert=fleet["chain"], device_ca_key=fleet["key"],
        device_ca_crl=fleet["root_crl"],
    )  # fmt: skip


def test_upstream_crl_refusals_name_the_file_and_the_ca(
    tmp_path: Path,
    fleet_ca: FleetCa,  # noqa: F811
) -> None:
    files = imported(tmp_path, fleet_ca).files
    issuer = pki.load_issuer(files.device_ca, files.device_ca_key)
    [root] = issuer.chain
    root_name = root.subject.rfc4514_string()
    # A CRL of another CA only.
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = _cert("Other Root", other_key, None, ca=True)
    stranger = tmp_path / "other-crl.pem"
    stranger.write_bytes(_crl(other, other_key, 30))
    with pytest.raises(PkiError) as e:
        make_server(tmp_path, device_ca_crl=stranger)
    assert str(e.value) == (
        f"{stranger}: no CRL issued by {root_name}; the gateway checks a CRL for every CA of "
        "the chain (ssl_crl)"
    )
    # The root's name, another key's signature.
    forged = tmp_path / "forged-crl.pem"
    forged.write_bytes(_crl(root, other_key, 30))
    with pytest.raises(PkiError) as e:
        make_server(tmp_path, device_ca_crl=forged)
    assert str(e.value) == f"{forged}: the CRL of {root_name} has a bad signature"
    # Expired: nextUpdate reached is already too late for nginx.
    crl = pki.load_crls(fleet_ca["root_crl"])[0]
    assert crl.next_update_utc is not None
    with pytest.raises(PkiError) as e:
        pki._check_upstream_crls(issuer, [crl], fleet_ca["root_crl"], crl.next_update_utc)
    assert str(e.value) == (
        f"{fleet_ca['root_crl']}: the CRL of {root_name} expired on "
        f"{crl.next_update_utc:%Y-%m-%d}; get a fresh one from the offline root"
    )
    pki._check_upstream_crls(
        issuer, [crl], fleet_ca["root_crl"], crl.next_update_utc - dt.timedelta(seconds=1)
    )


def test_refreshing_without_a_crl_file_makes_the_device_cas_own(
    tmp_path: Path,
    fleet_ca: FleetCa,  # noqa: F811
) -> None:
    files = imported(tmp_path, fleet_ca).files
    issuer = pki.load_issuer(files.device_ca, files.device_ca_key)
    files.crl.unlink()
    now = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)
    pki._refresh_upstream_crls(files, issuer, fleet_ca["next_root_crl"], now)
    own, upstream = pki.load_crls(files.crl)
    assert own.issuer == issuer.cert.subject and own.is_signature_valid(
        issuer.cert.public_key()  # type: ignore[arg-type]
    )
    assert list(own) == [] and own.last_update_utc == now - pki.BACKDATE
    assert upstream.public_bytes(serialization.Encoding.PEM) == (
        fleet_ca["next_root_crl"].read_bytes()
    )
    assert files.upstream_crl.read_bytes() == fleet_ca["next_root_crl"].read_bytes()


def test_refreshing_the_crl_of_a_self_signed_device_ca_is_refused(tmp_path: Path) -> None:
    files = make_server(tmp_path).files
    issuer = pki.load_issuer(files.device_ca, files.device_ca_key)
    with pytest.raises(ConfigError) as e:
        pki._refresh_upstream_crls(files, issuer, tmp_path / "any.pem", pki.utcnow())
    assert str(e.value) == "the device CA is self-signed: there is no CRL above it to refresh"
    assert isinstance(issuer.cert, x509.Certificate) and SERVER


def test_expiry_json_as_certs_check_prints_it(tmp_path: Path) -> None:
    not_after = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    entry = pki.Expiry("device", "CN=abc", tmp_path / "client.pem", not_after, "car-1", True)
    now = not_after - dt.timedelta(days=2, hours=12)
    assert entry.days_left(now) == 2.5
    assert entry.as_json(now) == {
        "kind": "device",
        "subject": "CN=abc",
        "name": "car-1",
        "path": str(tmp_path / "client.pem"),
        "not_after": "2027-01-01T00:00:00+00:00",
        "days_left": 2.5,
        "revoked": True,
    }
    # 2.52 days: one decimal in the JSON
    assert entry.as_json(now - dt.timedelta(minutes=30))["days_left"] == 2.5
