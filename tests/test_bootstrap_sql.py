"""The database bootstrap SQL against a real MariaDB: idempotent, one database per user."""

from __future__ import annotations

from pathlib import Path

from otactl import render, secretstore
from tests.conftest import MariaDB


def test_bootstrap_sql_runs_twice_and_confines_each_user(mariadb: MariaDB, tmp_path: Path):
    secrets = secretstore.load_or_create(tmp_path / "srv")
    sql = render.bootstrap_sql(secrets)
    for attempt in (1, 2):  # the Job may run again after a partial `up`: nothing may break
        proc = mariadb.sql(sql)
        assert proc.returncode == 0, f"run {attempt}: {proc.stderr}"
    # A database whose name matches `device_registry` with `_` as a wildcard: an unescaped
    # GRANT would hand it to the device_registry user too.
    assert mariadb.sql("CREATE DATABASE IF NOT EXISTS `deviceXregistry`;").returncode == 0

    for db in secretstore.DATABASES:
        password = secrets.db_passwords[db]
        own = mariadb.sql(
            "CREATE TABLE IF NOT EXISTS t (id INT); INSERT INTO t VALUES (1);",
            user=db, password=password, db=db,
        )  # fmt: skip
        assert own.returncode == 0, f"{db}: {own.stderr}"
        for other in secretstore.DATABASES:
            if other == db:
                continue
            refused = mariadb.sql("CREATE TABLE t2 (id INT);", user=db, password=password, db=other)
            assert refused.returncode != 0
            assert "Access denied" in refused.stderr
        wrong = mariadb.sql("SELECT 1;", user=db, password="not-" + password)
        assert wrong.returncode != 0 and "Access denied" in wrong.stderr

    probe = mariadb.sql(
        "CREATE TABLE t3 (id INT);",
        user="device_registry",
        password=secrets.db_passwords["device_registry"],
        db="deviceXregistry",
    )
    assert probe.returncode != 0 and "Access denied" in probe.stderr


def test_changed_password_is_applied_on_rerun(mariadb: MariaDB, tmp_path: Path):
    server_dir = tmp_path / "srv"
    first = secretstore.load_or_create(server_dir)
    assert mariadb.sql(render.bootstrap_sql(first)).returncode == 0
    # An operator rotates one password in the secrets file; the next bootstrap applies it.
    import yaml

    data = yaml.safe_load((server_dir / "secrets.yaml").read_text())
    data["db_passwords"]["director"] = "rotated-" + data["db_passwords"]["director"]
    (server_dir / "secrets.yaml").write_text(yaml.safe_dump(data))
    second = secretstore.load_or_create(server_dir)
    assert mariadb.sql(render.bootstrap_sql(second)).returncode == 0
    new = second.db_passwords["director"]
    assert mariadb.sql("SELECT 1;", user="director", password=new, db="director").returncode == 0
    old = first.db_passwords["director"]
    assert mariadb.sql("SELECT 1;", user="director", password=old, db="director").returncode != 0
