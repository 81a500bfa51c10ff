"""Time for one new build-tools client certificate (not a test: it prints figures).

In one run, in a scratch server folder:
- in process: what `otactl credentials --new-client NAME` adds for a new NAME (key,
  certificate, client_auth.p12, server.p12, the zip), against the same call for a client that
  already has its certificate (the baseline: nothing issued, zip rebuilt and found equal);
- with `--kubeconfig/--namespace/--generated` of a deployed installation, the CLI as a user
  runs it, end to end (services through the API server's proxy included), new clients
  against the existing `default` client.

Usage: .venv/bin/python bench/bench_credentials.py [--runs 15]
           [--generated DIR --kubeconfig F --namespace NS [--set a=b ...]]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from otactl import credentials, pki
from otactl.config import load_values

ROOT = Path(__file__).resolve().parent.parent
ROOT_JSON = json.dumps({"signed": {"_type": "root"}, "signatures": []}).encode()
KEYS = credentials.RepoKeys("repo", ROOT_JSON, "ED25519", "ab" * 32, "cd" * 32, False, False)


def in_process(runs: int) -> tuple[list[float], list[float]]:
    values = load_values()
    settings = pki.PkiSettings(**values.pki.model_dump())
    urls = credentials.PublicUrls.for_domain(values.domain, "https://gw:30443", 30444)
    with tempfile.TemporaryDirectory(prefix="otactl-bench-") as tmp:
        server_dir = Path(tmp) / values.server_name
        pki.ensure_server_pki_for(values, server_dir)
        ca_pem = pki.ServerFiles(server_dir).server_ca.read_bytes()

        def one(client: str) -> float:
            start = time.perf_counter()
            tls, _ = credentials.client_tls(server_dir, client, settings, ca_pem)
            data = credentials.build_zip(KEYS, urls, ca_pem, tls)
            credentials.write_if_changed(server_dir / credentials.zip_name(client), data)
            return time.perf_counter() - start

        one("default")
        new = [one(f"ci-{i}") for i in range(runs)]
        kept = [one("default") for _ in range(runs)]
    return new, kept


def cli(runs: int, args: argparse.Namespace) -> tuple[list[float], list[float]]:
    base = [
        sys.executable,
        "-m",
        "otactl",
        "--generated",
        args.generated,
        "credentials",
        "--kubeconfig",
        args.kubeconfig,
        "--namespace",
        args.namespace,
        "-o",
        "json",
    ]
    base += [a for s in args.set or [] for a in ("--set", s)]  # fmt: skip

    def one(*extra: str) -> float:
        start = time.perf_counter()
        proc = subprocess.run([*base, *extra], capture_output=True, text=True, cwd=ROOT)
        took = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"otactl credentials failed: {proc.stderr.strip()}")
        return took

    one()
    tag = uuid.uuid4().hex[:6]
    new = [one("--new-client", f"bench-{tag}-{i}") for i in range(runs)]
    kept = [one() for _ in range(runs)]
    return new, kept


def report(what: str, new: list[float], kept: list[float]) -> None:
    n, k = statistics.median(new), statistics.median(kept)
    print(f"{what}: new client median {n * 1000:.1f} ms (min {min(new) * 1000:.1f}, max "
          f"{max(new) * 1000:.1f}); existing client median {k * 1000:.1f} ms; "
          f"ratio {n / k:.2f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--generated")
    parser.add_argument("--kubeconfig")
    parser.add_argument("--namespace")
    parser.add_argument("--set", action="append")
    args = parser.parse_args()
    report(f"in process, {args.runs} runs", *in_process(args.runs))
    if args.generated and args.kubeconfig and args.namespace:
        report(f"otactl credentials CLI, {args.runs} runs", *cli(args.runs, args))
    else:
        print("CLI: skipped (give --generated, --kubeconfig and --namespace of a deployment)")


if __name__ == "__main__":
    main()
