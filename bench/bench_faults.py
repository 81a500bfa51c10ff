"""Figures for `otactl up` under faults of the local cluster (not a test: it prints figures).

For each fault, on a cluster of its own: `otactl up` (the CLI, log mode, the default 15 s
heartbeat) is held in its infra wait (nodes cordoned: the pods stay Pending), the fault is
injected, and from the CLI's stderr, timestamped as it arrives:
- fault → first report: until the first line saying the API server is unreachable (or,
  when otactl never loses it, the first line at all);
- heal → progress: from the heal (unfrozen, or the stopped process started again) until
  "reachable again", and until the first object reported ready after the nodes are
  uncordoned (the wait going on);
- the exit code, and whether a rerun converges (exit 0, then a run that writes nothing).
A fault left unhealed until the deadline gives the exit code and the error line. The slow
link is timed against a baseline `up` in the same run.

Usage: .venv/bin/python bench/bench_faults.py [--only freeze|restart|deadline|slow ...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from otactl import localcluster

ROOT = Path(__file__).resolve().parents[1]


class Cli:
    """`otactl ARGS` in the background; stderr lines with the monotonic time they came."""

    def __init__(self, args: list[str]) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTACTL_")}
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "otactl", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
        )  # fmt: skip
        self.lines: list[tuple[float, str]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def first(self, pattern: str, after: float, timeout: float = 300) -> tuple[float, str]:
        end = time.monotonic() + timeout
        regex = re.compile(pattern)
        while time.monotonic() < end:
            for t, line in list(self.lines):
                if t >= after and regex.search(line):
                    return t, line
            if self.proc.poll() is not None and not self.reader.is_alive():
                break
            time.sleep(0.05)
        return float("nan"), ""

    def finish(self) -> int:
        self.proc.wait(timeout=1900)
        self.reader.join(timeout=10)
        return self.proc.returncode


class Bench:
    def __init__(self, cluster: localcluster.ClusterInfo, tmp: Path) -> None:
        self.cluster = cluster
        self.tmp = tmp
        self.kubectl = [str(localcluster.find_bin_dir() / "kubectl"),
                        f"--kubeconfig={cluster.kubeconfig}"]  # fmt: skip

    def args(self, ns: str, *extra: str) -> list[str]:
        port = 30100 + int(uuid.uuid4().int % 2000)
        return ["--generated", str(self.tmp / ns), "up", "--kubeconfig", self.cluster.kubeconfig,
                "--namespace", ns, "--set", f"tenant={ns}", "--set", f"gateway.node_port={port}",
                *extra]  # fmt: skip

    def nodes(self, verb: str) -> None:
        for node in self.cluster.nodes:
            subprocess.run([*self.kubectl, verb, node], check=True, capture_output=True)

    def converges(self, args: list[str]) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTACTL_")}
        run = [sys.executable, "-m", "otactl", *args, "-o", "json"]
        first = subprocess.run(run, capture_output=True, text=True, env=env, cwd=ROOT)
        if first.returncode != 0:
            return f"rerun exit {first.returncode}"
        second = subprocess.run(run, capture_output=True, text=True, env=env, cwd=ROOT)
        changed = json.loads(second.stdout)["changed"] if second.returncode == 0 else None
        return f"rerun exit {first.returncode}, run after: {len(changed or [])} objects written"


def held_in_infra(bench: Bench, ns: str, *extra: str) -> tuple[Cli, list[str]]:
    bench.nodes("cordon")
    args = bench.args(ns, *extra)
    cli = Cli(args)
    cli.first(r"StatefulSet \S+ waiting", cli.started)
    time.sleep(1.0)  # well inside the wait
    return cli, args


def fault_run(bench: Bench, name: str, inject, heal) -> None:  # type: ignore[no-untyped-def]
    ns = f"bench-{uuid.uuid4().hex[:6]}"
    cli, args = held_in_infra(bench, ns, "--timeout", "900")
    t0 = time.monotonic()
    inject()
    t_report, line = cli.first("unreachable", t0, timeout=60)
    healed_at = heal()
    bench.nodes("uncordon")
    t_back, _ = cli.first("reachable again", healed_at, timeout=120)
    t_ready, _ = cli.first(r" ready: ", healed_at, timeout=300)
    code = cli.finish()
    seen = [line for t, line in cli.lines if t0 <= t]
    first_after = seen[0] if seen else ""
    print(f"{name}:")
    said = line or f"(no such line; first: {first_after})"
    print(f"  fault -> first report    {t_report - t0:6.1f} s  {said}")
    print(f"  heal  -> reachable again {t_back - healed_at:6.1f} s")
    print(f"  heal  -> object ready    {t_ready - healed_at:6.1f} s")
    print(f"  exit code {code}; {bench.converges(args)}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*", choices=["freeze", "restart", "deadline", "slow"])
    only = set(parser.parse_args().only or ["freeze", "restart", "deadline", "slow"])
    with tempfile.TemporaryDirectory(prefix="otactl-bench-faults-") as tmp_name:
        tmp = Path(tmp_name)
        opts = localcluster.ClusterOptions(
            state_dir=tmp / "local", api_port=0, control_port=0, nodes=1, owner_pid=os.getpid()
        )
        info = localcluster.up(opts)
        state = opts.state_dir
        try:
            bench = Bench(info, tmp)

            def freeze() -> None:
                localcluster.set_faults(state, frozen=True)

            def unfreeze() -> float:
                time.sleep(20)  # a partition of about 40 s
                localcluster.set_faults(state, frozen=False)
                return time.monotonic()

            if "freeze" in only:
                fault_run(bench, "freeze (healed 20 s after the first report)", freeze, unfreeze)

            stopped: dict[str, threading.Thread] = {}
            done: dict[str, float] = {}

            def restart(name: str, down: float):  # type: ignore[no-untyped-def]
                def inject() -> None:
                    def started(line: str) -> None:
                        if line.startswith("started "):  # healed: the process runs again
                            done[name] = time.monotonic()

                    def run() -> None:
                        localcluster.restart_component(
                            state, name, down_seconds=down, progress=started
                        )

                    stopped[name] = threading.Thread(target=run)
                    stopped[name].start()

                def heal() -> float:
                    stopped[name].join()
                    return done[name]

                return inject, heal

            if "restart" in only:
                fault_run(bench, "restart-apiserver (stopped 10 s)", *restart("kube-apiserver", 10))
                fault_run(bench, "restart-etcd (stopped 10 s)", *restart("etcd", 10))

            # Not healed: the deadline comes while the API server is unreachable.
            if "deadline" in only:
                ns = f"bench-{uuid.uuid4().hex[:6]}"
                cli, args = held_in_infra(bench, ns, "--timeout", "90")
                t0 = time.monotonic()
                freeze()
                t_report, _ = cli.first("unreachable", t0, timeout=60)
                code = cli.finish()
                error = next((line for _, line in cli.lines if line.startswith("error:")), "")
                localcluster.set_faults(state, frozen=False)
                bench.nodes("uncordon")
                print("freeze until the deadline (--timeout 90):")
                print(f"  fault -> first report    {t_report - t0:6.1f} s")
                print(f"  exit code {code}: {error}")
                print(f"  {bench.converges(args)}")

            # A slow link, against a baseline in the same run.
            if "slow" in only:

                def timed_up(extra_ms: int) -> tuple[float, int]:
                    localcluster.set_faults(state, delay_ms=extra_ms)
                    ns = f"bench-{uuid.uuid4().hex[:6]}"
                    cli = Cli(bench.args(ns, "--timeout", "900"))
                    code = cli.finish()
                    localcluster.set_faults(state, delay_ms=0)
                    return time.monotonic() - cli.started, code

                base, base_code = timed_up(0)
                slow, slow_code = timed_up(200)
                print("slow 200 ms (every answer of the API server):")
                print(f"  up from nothing: {base:.1f} s (exit {base_code}) without, "
                      f"{slow:.1f} s (exit {slow_code}) with: x{slow / base:.2f}")  # fmt: skip
        finally:
            localcluster.down(state)


if __name__ == "__main__":
    main()
