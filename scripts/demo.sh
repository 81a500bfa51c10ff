#!/usr/bin/env bash
# The whole job on the local simulated cluster: cluster up, OTA CE deployed, one device
# provisioned and registered, health checked. Safe to run again: every step converges.
set -euo pipefail
cd "$(dirname "$0")/.."
otactl=.venv/bin/otactl

if ! $otactl local-cluster status >/dev/null 2>&1; then
  $otactl local-cluster up
fi
export KUBECONFIG="$PWD/generated/local/kubeconfig"

$otactl up
$otactl new-device demo-1 -o json > generated/demo-1.json
$otactl health

bundle=$(.venv/bin/python -c 'import json; print(json.load(open("generated/demo-1.json"))["path"])')
server=$($otactl config show -o json | .venv/bin/python -c 'import json,sys; print(json.load(sys.stdin)["server_name"])')
cat <<MSG

Done.
  device bundle:    $bundle
  credentials.zip:  generated/$server/credentials.zip
  kubeconfig:       export KUBECONFIG=$KUBECONFIG
  stop it:          make demo-down
MSG
