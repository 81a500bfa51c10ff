#!/usr/bin/env bash
# Set up a fresh machine for otactl's demo and tests: Debian packages (nginx, MariaDB,
# OpenSSH, iproute2, openssl, curl, Java 17 and Maven), BouncyCastle from Maven Central (the
# TLS stack of garage-sign, for tests/test_build_tools_tls.py), the Python virtual
# environment in .venv (and checkov's in .venv-scan), and the local cluster's binaries (built from Go modules into
# ~/.cache/otactl). Idempotent: what is there already is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for bin in nginx mariadbd mariadb mariadb-install-db sshd ssh-keygen ip nsenter flock openssl \
  curl java javac mvn; do
  command -v "$bin" >/dev/null 2>&1 || [[ -x "/usr/sbin/$bin" ]] || missing+=("$bin")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages for: ${missing[*]}" >&2
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    nginx-light mariadb-server mariadb-client openssh-server openssh-client iproute2 util-linux openssl \
    curl openjdk-17-jdk-headless maven >/dev/null
fi

# BouncyCastle as ota-tuf pins it for garage-sign (libtuf/build.sbt: 1.59), checked by hash.
java_dir="${OTACTL_CACHE_DIR:-$HOME/.cache/otactl}/java"
while read -r artifact sha256; do
  jar="$java_dir/$artifact-1.59.jar"
  if [[ ! -f $jar ]]; then
    echo "setup: fetching $artifact 1.59 from Maven Central" >&2
    mvn -q dependency:copy "-Dartifact=org.bouncycastle:$artifact:1.59" "-DoutputDirectory=$java_dir"
  fi
  echo "$sha256  $jar" | sha256sum --check --quiet
done <<'JARS'
bcprov-jdk15on 1c31e44e331d25e46d293b3e8ee2d07028a67db011e74cb2443285aed1d59c85
bcpkix-jdk15on 601d85cfbcef76a1cb77cbf755a6234a4ba1d4c02a98d9a81028d471f388694f
JARS

if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
stamp=.venv/.otactl-installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
  echo "setup: installing otactl and its test tools into .venv" >&2
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[test]'
  touch "$stamp"
fi

# checkov scans the rendered manifests (scripts/scan.sh, `make lint`). It pins many libraries
# of its own, so it lives in a virtual environment of its own.
checkov_version=3.3.30
if [[ "$(.venv-scan/bin/checkov --version 2>/dev/null)" != "$checkov_version" ]]; then
  echo "setup: installing checkov $checkov_version into .venv-scan" >&2
  python3 -m venv .venv-scan
  .venv-scan/bin/pip install -q "checkov==$checkov_version"
fi

contrib/local-cluster/build.sh >/dev/null
