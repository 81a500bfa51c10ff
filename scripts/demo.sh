#!/usr/bin/env bash
# The whole job on the local simulated cluster: cluster up, OTA CE deployed, one device
# provisioned and registered, health checked. Safe to run again: every step converges.
set -euo pipefail
cd "$(dirname "$0")/.."
otactl=.venv/bin/otactl

if ! $otactl local-cluster status >/dev/null 2>&1; then
  $otactl local-cluster up
fi
# The local profile exposes the gateway and the reverse proxy as NodePorts: `otactl hosts`
# and the URLs in credentials.zip then name what the cluster really exposes. Every later
# command (yours too) must use the same profile, or `up` would turn them back to ClusterIP.
export KUBECONFIG="$PWD/generated/local/kubeconfig" OTACTL_PROFILE=local

$otactl up
$otactl new-device demo-1 -o json > generated/demo-1.json
$otactl health
$otactl hosts > generated/demo-hosts.txt

bundle=$(.venv/bin/python -c 'import json; print(json.load(open("generated/demo-1.json"))["path"])')
server=$($otactl config show -o json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["server_name"])')
tufrepo=$(.venv/bin/python -c 'import sys, zipfile; print(zipfile.ZipFile(sys.argv[1]).read("tufrepo.url").decode().strip())' "generated/$server/credentials.zip")
cat <<MSG

Done.
  device bundle:    $bundle
  credentials.zip:  generated/$server/credentials.zip (tuf-reposerver: $tufrepo)
  /etc/hosts lines: generated/demo-hosts.txt (otactl hosts)
  your shell:       export KUBECONFIG=$KUBECONFIG OTACTL_PROFILE=local
  stop it:          make demo-down
MSG
