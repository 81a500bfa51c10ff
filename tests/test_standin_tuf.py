"""The stand-in's TUF keys and root metadata (contrib/local-cluster/standin/tufrepo.py)
in ota-tuf's form, checked by an independent reader (tests/tuf_check.py) and by otactl's
own key-pair check: what the credentials phase meets on a real server."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from tuf_check import verify_root

from otactl.credentials import check_key_pair

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "contrib/local-cluster/standin"))
try:
    import tufrepo
finally:
    sys.path.pop(0)


@pytest.mark.parametrize("keytype", ["RSA", "ED25519", "ECPRIME256V1"])
def test_root_is_signed_and_the_targets_pair_passes_otactls_check(keytype: str) -> None:
    keys = tufrepo.role_keys(keytype)
    doc = verify_root(tufrepo.signed_root(keys))
    signed = doc["signed"]
    assert set(signed["roles"]) == {"root", "snapshot", "targets", "timestamp"}
    assert {k["keytype"] for k in signed["keys"].values()} == {keytype}
    [targets_id] = signed["roles"]["targets"]["keyids"]
    pair = keys["targets"].pair_json()
    assert pair["keytype"] == keytype
    assert signed["keys"][targets_id]["keyval"]["public"] == pair["keyval"]["public"]
    check_key_pair(keytype, pair["keyval"]["public"], pair["keyval"]["private"])


def test_upstream_encodings() -> None:
    assert tufrepo.DEFAULT_KEY_TYPE == "RSA"
    rsa = tufrepo.generate("RSA")
    assert rsa.public.startswith("-----BEGIN PUBLIC KEY-----\n")
    assert rsa.private.startswith("-----BEGIN RSA PRIVATE KEY-----\n")
    assert rsa.key.key_size == 2048
    ed = tufrepo.generate("ED25519")
    assert len(bytes.fromhex(ed.public)) == 32
    assert ed.private.endswith(ed.public) and len(bytes.fromhex(ed.private)) == 64
    assert rsa.sign(b"x")["method"] == "rsassa-pss-sha256" and ed.sign(b"x")["method"] == "ed25519"
    with pytest.raises(ValueError, match="Unknown KeyType: DSA"):
        tufrepo.generate("DSA")


def test_a_changed_root_fails_verification() -> None:
    doc = json.loads(tufrepo.signed_root(tufrepo.role_keys("ED25519")))
    doc["signed"]["version"] = 2
    with pytest.raises(InvalidSignature):
        verify_root(json.dumps(doc).encode())
