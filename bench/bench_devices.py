"""Device bundles per second: `otactl new-device --count N` against the per-device openssl
pipeline of the old scripts, on this machine in one run; then one big batch for throughput
and the peak memory of the whole process tree.

    .venv/bin/python bench/bench_devices.py [--count 2000] [--openssl-count 200]
                                            [--big 100000] [--format FMT] [--dir DIR] [--keep]

The bundles are of the shipped default format (device-cred) unless --format says otherwise;
device keys are P-256 (the default pki.key_type).

The openssl pipeline runs as the old scripts ran it: one bash loop, device after device
(ecparam | ec, pkcs8 -topk8, req -new, x509 -req -CAcreateserial, chain concat, x509 -text).
It is timed on --openssl-count devices (its rate does not depend on the count). Every
figure is wall-clock time of the whole command, start-up included.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVER = "bench.example.com"


def tree_memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) summed over `pid` and its descendants. The RSS sum counts the pages that
    forked workers share once per process (an upper bound); PSS splits them fairly."""
    rss = pss = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return rss, pss


def cpu_seconds() -> float:
    """User + system time of the finished children of this script, their workers included."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_measured(cmd: list[str], env: dict[str, str]) -> tuple[float, tuple[int, int]]:
    """Run `cmd`; wall time and the peak (RSS, PSS) of its process tree (sampled, 20 ms)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    peak = (0, 0)
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            rss, pss = tree_memory_kib(proc.pid)
            peak = (max(peak[0], rss), max(peak[1], pss))
            stop.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    elapsed = time.perf_counter() - start
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} exited {proc.returncode}: {err}")
    return elapsed, peak


OPENSSL_LOOP = r"""
set -eu
cd "$1"
openssl ecparam -genkey -name prime256v1 -noout 2>/dev/null | openssl ec -out ca.key 2>/dev/null
openssl req -x509 -new -key ca.key -subj /CN=ota-devices-CA -days 3650 -out ca.crt
printf 'keyUsage=critical,digitalSignature\nextendedKeyUsage=critical,clientAuth\n' > client.ext
start=$(date +%s.%N)
for i in $(seq 1 "$2"); do
  uuid=$(cat /proc/sys/kernel/random/uuid)
  d="devices/$uuid"
  mkdir -p "$d"
  openssl ecparam -genkey -name prime256v1 2>/dev/null | openssl ec -out "$d/device.key" 2>/dev/null
  openssl pkcs8 -topk8 -nocrypt -in "$d/device.key" -out "$d/pkey.pem"
  openssl req -new -key "$d/pkey.pem" -subj "/CN=$uuid" -out "$d/device.csr"
  openssl x509 -req -days 365 -extfile client.ext -in "$d/device.csr" -CAcreateserial \
    -CA ca.crt -CAkey ca.key -out "$d/client.pem" 2>/dev/null
  cat "$d/client.pem" ca.crt > "$d/client.chain.pem"
  openssl x509 -text -noout -in "$d/client.pem" > "$d/client.txt"
done
end=$(date +%s.%N)
echo "$start $end"
"""


def openssl_rate(workdir: Path, count: int) -> float:
    workdir.mkdir(parents=True)
    out = subprocess.run(
        ["bash", "-c", OPENSSL_LOOP, "bench", str(workdir), str(count)],
        check=True,
        capture_output=True,
        text=True,
    )
    start, end = map(float, out.stdout.split())
    return count / (end - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--openssl-count", type=int, default=200)
    parser.add_argument("--big", type=int, default=100_000, help="0 skips the big batch")
    parser.add_argument("--format", help="sota.toml format (default: the values' default)")
    parser.add_argument("--dir", type=Path, help="work folder (default: a new temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the bundles")
    args = parser.parse_args()

    work = args.dir or Path(tempfile.mkdtemp(prefix="otactl-bench-devices-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTACTL_")}
    otactl = [sys.executable, "-m", "otactl", "--set", f"server_name={SERVER}"]

    def batch(folder: str, count: int) -> tuple[float, tuple[int, int]]:
        env["OTACTL_GENERATED"] = str(work / folder)
        subprocess.run([*otactl, "new-server"], env=env, cwd=ROOT, check=True, capture_output=True)
        cmd = [*otactl, "new-device", "--count", str(count), "--prefix", folder, "--no-register"]
        if args.format:
            cmd += ["--format", args.format]
        return run_measured(cmd, env)

    load = os.getloadavg()[0]
    print(f"machine: {os.cpu_count()} cores, load average {load:.2f}; work folder {work}")
    print(f"format: {args.format or 'default (device-cred)'}")
    try:
        cpu = cpu_seconds()
        seconds, (rss, pss) = batch("small", args.count)
        cpu = cpu_seconds() - cpu
        ours = args.count / seconds
        print(
            f"otactl new-device --count {args.count}: {seconds:.2f} s, {ours:.0f} bundles/s "
            f"(peak tree RSS {rss // 1024} MiB, PSS {pss // 1024} MiB)"
        )
        # On a machine shared with other work the wall-clock rate says more about the others;
        # the CPU time the batch used (new-server's included) says what idle cores would do.
        cores = os.cpu_count() or 1
        print(
            f"  CPU time {cpu:.2f} s (user + system, new-server included): "
            f"{args.count / cpu:.0f} bundles per CPU-second, about "
            f"{args.count / cpu * cores:.0f} bundles/s on {cores} idle cores "
            f"(load average now {os.getloadavg()[0]:.2f})"
        )
        theirs = openssl_rate(work / "openssl", args.openssl_count)
        print(
            f"openssl pipeline ({args.openssl_count} devices, one after another): "
            f"{theirs:.1f} bundles/s"
        )
        print(f"ratio: {ours / theirs:.0f}x")

        if args.big:
            seconds, (rss, pss) = batch("big", args.big)
            children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            print(
                f"otactl new-device --count {args.big}: {seconds:.1f} s, "
                f"{args.big / seconds:.0f} bundles/s"
            )
            print(
                f"  peak memory of the process tree (sampled): RSS {rss // 1024} MiB, "
                f"PSS {pss // 1024} MiB"
            )
            print(
                f"  getrusage: largest child {children // 1024} MiB + this script "
                f"{me // 1024} MiB = {(children + me) // 1024} MiB"
            )
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
