"""The local cluster without root, as the README promises: `otactl local-cluster up` run by
an unprivileged user (user and network namespaces instead of `ip netns`), with its ports
and its binaries' cache given by OTACTL_LOCAL_API_PORT, OTACTL_LOCAL_CONTROL_PORT and
OTACTL_CACHE_DIR.

As root (CI), the fixture creates a throwaway user with useradd and removes it after; as
any other user the test runs as that user. The user must be able to read Python, the
packages and the binaries: they are hard-linked (copied across file systems) into a
folder of its own, since the checkout and the cache may sit in root's 0700 home."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from otactl import localcluster
from otactl.errors import LocalClusterError
from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.integration


def _link_tree(src: Path, dst: Path, *ignore: str) -> None:
    """Hard links of src's files under dst (the files stay root's and world-readable:
    never chown them, that would change the originals). New folders, made here, are
    handed to the user by the caller."""

    def link(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:  # another file system
            shutil.copy2(s, d)

    shutil.copytree(
        src, dst, symlinks=True, copy_function=link, ignore=shutil.ignore_patterns(*ignore)
    )


@dataclass
class User:
    name: str
    uid: int
    gid: int
    home: Path

    def run(
        self, cmd: list[str], env: dict[str, str], timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run `cmd` as this user (setuid in the child when we are root)."""
        me = os.geteuid() == self.uid

        def drop() -> None:
            if not me:
                os.setgroups([])
                os.setgid(self.gid)
                os.setuid(self.uid)

        return subprocess.run(
            cmd, env=env, cwd=self.home, capture_output=True, text=True, timeout=timeout,
            preexec_fn=drop,
        )  # fmt: skip


@pytest.fixture(scope="module")
def unprivileged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[User]:
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid())
        home = tmp_path_factory.mktemp("rootless")
        yield User(me.pw_name, me.pw_uid, me.pw_gid, home)
        return
    name = f"otactl-rl-{uuid.uuid4().hex[:8]}"
    base = Path(f"/home/{name}")
    subprocess.run(
        ["useradd", "--create-home", "--home-dir", str(base), "--shell", "/bin/sh", name],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        entry = pwd.getpwnam(name)
        yield User(name, entry.pw_uid, entry.pw_gid, base)
    finally:
        # The test stopped the cluster; a leftover process would make userdel refuse.
        subprocess.run(["userdel", "--remove", name], capture_output=True)


def test_rootless_local_cluster(unprivileged: User) -> None:
    try:
        bin_dir = localcluster.find_bin_dir()
    except LocalClusterError as e:
        pytest.fail(str(e), pytrace=False)
    release = localcluster.pinned_release()
    assert release is not None
    tree = unprivileged.home / "otactl-tree"
    if tree.exists():
        shutil.rmtree(tree)
    tree.mkdir()
    # What the user runs: this Python, the packages, the checkout, the binaries.
    _link_tree(Path(sys.base_prefix), tree / "python", "site-packages", "test", "__pycache__")
    _link_tree(Path(sysconfig.get_paths()["purelib"]), tree / "site-packages")
    for part in ("otactl", "templates", "contrib"):
        _link_tree(ROOT / part, tree / "src" / part)
    cache = tree / "cache"
    _link_tree(bin_dir, cache / "local-cluster" / release / "bin")
    gen = unprivileged.home / "generated"
    if os.geteuid() == 0:
        for path in (tree, *tree.rglob("*")):
            if path.is_dir() and not path.is_symlink():  # folders made here, not links
                os.chown(path, unprivileged.uid, unprivileged.gid)
                path.chmod(0o755)
    python = tree / "python" / "bin" / Path(sys.executable).name
    if not python.exists():
        python = tree / "python" / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    api_port, control_port = free_port(), free_port()
    env = {
        "HOME": str(unprivileged.home),
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": f"{tree / 'src'}:{tree / 'site-packages'}",
        # before the interpreter's RUNPATH, which may point into root's home
        "LD_LIBRARY_PATH": str(tree / "python" / "lib"),
        "OTACTL_CACHE_DIR": str(cache),
        "OTACTL_LOCAL_API_PORT": str(api_port),
        "OTACTL_LOCAL_CONTROL_PORT": str(control_port),
    }
    otactl = [str(python), "-m", "otactl", "--generated", str(gen)]
    up = unprivileged.run([*otactl, "local-cluster", "up", "--timeout", "240"], env, timeout=300)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert f"is up at https://127.0.0.1:{api_port}" in up.stdout
        assert f"stand-in knobs: http://127.0.0.1:{control_port}/knobs" in up.stdout
        status = unprivileged.run([*otactl, "local-cluster", "status", "-o", "json"], env)
        assert status.returncode == 0, status.stderr
        report = json.loads(status.stdout)
        assert report["api_ready"] is True and report["running"] is True
        state = json.loads((gen / "local" / "state.json").read_text())
        assert state["netns_mode"] == "userns"  # no `ip netns`: that needs root
        # Every process it started belongs to the user, none to root.
        pids = [p["pid"] for p in state["processes"]]
        assert pids
        for pid in pids:
            assert Path(f"/proc/{pid}").stat().st_uid == unprivileged.uid
        kubectl = cache / "local-cluster" / release / "bin" / "kubectl"
        nodes = unprivileged.run(
            [str(kubectl), f"--kubeconfig={gen / 'local' / 'kubeconfig'}", "get", "nodes",
             "-o", "jsonpath={.items[*].status.conditions[?(@.type=='Ready')].status}"],
            env,
        )  # fmt: skip
        assert nodes.returncode == 0, nodes.stderr
        assert nodes.stdout.split() == ["True"]
    finally:
        down = unprivileged.run([*otactl, "local-cluster", "down"], env)
        assert down.returncode == 0, down.stdout + down.stderr
    assert not (gen / "local" / "state.json").exists()
