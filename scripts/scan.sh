#!/usr/bin/env bash
# The rendered manifests (default values) through checkov, as a platform team's admission
# pipeline would scan them. Every finding is either fixed or skipped in the templates with
# its reason (checkov.io/skipN annotations), so any failed check fails the scan.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# Default values only: no user file ($OTACTL_CONFIG, ./otactl.yaml) and no --set.
cd "$work"
env -u OTACTL_CONFIG -u OTACTL_GENERATED "$root/.venv/bin/otactl" --generated "$work/generated" \
  render --out "$work/manifests" >/dev/null
# --skip-download: checkov would otherwise fetch its guidelines from Prisma Cloud; the scan
# must not leave this machine (it passes the same inside `unshare -n`, with no network).
"$root/.venv-scan/bin/checkov" --directory "$work/manifests" --framework kubernetes \
  --compact --quiet --skip-download
