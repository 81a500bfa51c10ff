"""Device bundles per second: `otactl new-device --count N` against the per-device openssl
pipeline of the old scripts, on this machine in one run; then one big batch for throughput
and the peak memory of the whole process tree.

    .venv/bin/python bench/bench_devices.py [--count 2000] [--openssl-count 200]
                                            [--big 100000] [--dir DIR] [--keep]

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


def tree_rss_kib(pid: int) -> int:
    """Sum of VmRSS over `pid` and its descendants (counts pages shared by forked workers
    once per process, so it over-states: an upper bound)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total += next(
                (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")),
                0,
            )
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def run_measured(cmd: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Run `cmd`; wall time and the peak summed RSS of its process tree (sampled, 20 ms)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, tree_rss_kib(proc.pid))
            stop.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    rc = proc.wait()
    elapsed = time.perf_counter() - start
    stop.set()
    sampler.join()
    if rc != 0:
        sys.exit(f"{' '.join(cmd)} exited {rc}")
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
    parser.add_argument("--dir", type=Path, help="work folder (default: a new temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the bundles")
    args = parser.parse_args()

    work = args.dir or Path(tempfile.mkdtemp(prefix="otactl-bench-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTACTL_")}
    otactl = [sys.executable, "-m", "otactl", "--set", f"server_name={SERVER}"]
    print(f"machine: {os.cpu_count()} cores; work folder {work}")
    try:
        env["OTACTL_GENERATED"] = str(work / "small")
        subprocess.run([*otactl, "new-server"], env=env, cwd=ROOT, check=True, capture_output=True)
        seconds, peak = run_measured(
            [
                *otactl,
                "new-device",
                "--count",
                str(args.count),
                "--prefix",
                "bench",
                "--no-register",
            ],
            env,
        )
        ours = args.count / seconds
        print(
            f"otactl new-device --count {args.count}: {seconds:.2f} s, {ours:.0f} bundles/s, "
            f"peak tree RSS {peak / 1024:.0f} MiB"
        )

        theirs = openssl_rate(work / "openssl", args.openssl_count)
        print(
            f"openssl pipeline ({args.openssl_count} devices, one after another): "
            f"{theirs:.1f} bundles/s"
        )
        print(f"ratio: {ours / theirs:.0f}x")

        if args.big:
            env["OTACTL_GENERATED"] = str(work / "big")
            subprocess.run(
                [*otactl, "new-server"], env=env, cwd=ROOT, check=True, capture_output=True
            )
            seconds, peak = run_measured(
                [
                    *otactl,
                    "new-device",
                    "--count",
                    str(args.big),
                    "--prefix",
                    "big",
                    "--no-register",
                ],
                env,
            )
            children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            print(
                f"otactl new-device --count {args.big}: {seconds:.1f} s, "
                f"{args.big / seconds:.0f} bundles/s"
            )
            print(f"  peak RSS, sum over the process tree (sampled): {peak / 1024:.0f} MiB")
            print(
                f"  peak RSS, largest child + this script (getrusage): "
                f"{(children + me) / 1024:.0f} MiB"
            )
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
