#!/usr/bin/env bash
# Set up a fresh machine for otactl's demo and tests: Debian packages (nginx, MariaDB,
# OpenSSH, iproute2, openssl), the Python virtual environment in .venv, and the local
# cluster's binaries (built from Go modules into ~/.cache/otactl). Idempotent: what is
# there already is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for bin in nginx mariadbd mariadb mariadb-install-db sshd ssh-keygen ip nsenter flock openssl; do
  command -v "$bin" >/dev/null 2>&1 || [[ -x "/usr/sbin/$bin" ]] || missing+=("$bin")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages for: ${missing[*]}" >&2
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    nginx-light mariadb-server mariadb-client openssh-server openssh-client iproute2 util-linux openssl \
    >/dev/null
fi

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

contrib/local-cluster/build.sh >/dev/null
