#!/usr/bin/env bash
# Build the local simulated cluster's binaries (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl, kwok) from the Go modules
# pinned in this folder's go.mod, into a cache outside the repo.
#
# Usage: contrib/local-cluster/build.sh        (no arguments)
#
# Idempotent: when the cache already holds binaries built from the same pins
# (go.mod, go.sum and this script), nothing is rebuilt. The only line printed on
# stdout is the bin dir; progress goes to stderr.
#
# Environment:
#   OTACTL_CACHE_DIR  cache root (default: ${XDG_CACHE_HOME:-~/.cache}/otactl)
#   GO                go command (default: go on PATH, else /usr/local/go/bin/go)
#   OTACTL_GOCACHE    Go build cache to use and keep (default: a private one under the
#                     release folder, removed after a successful build: it is ~3 GB and
#                     the binaries are only rebuilt when a pin changes)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

if [[ -n "${GO:-}" ]]; then
  go_cmd="$GO"
elif command -v go >/dev/null 2>&1; then
  go_cmd="$(command -v go)"
else
  go_cmd=/usr/local/go/bin/go
fi
if [[ ! -x "$go_cmd" ]]; then
  echo "build.sh: no Go toolchain found (set GO=/path/to/go)" >&2
  exit 1
fi

# The VCS stamp would describe otactl's repo, not the upstream release.
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-buildvcs=false"
export CGO_ENABLED=0

k8s_version="$(awk '$1 == "k8s.io/kubernetes" {print $2}' go.mod)"
if [[ -z "$k8s_version" ]]; then
  echo "build.sh: k8s.io/kubernetes is not pinned in go.mod" >&2
  exit 1
fi

cache_root="${OTACTL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/otactl}"
release_dir="$cache_root/local-cluster/$k8s_version"
bin_dir="$release_dir/bin"
binaries=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok)

# The stamp ties the binaries to the exact pins and toolchain; a change rebuilds.
stamp_version=1 # bump when the build command below changes
stamp="$({ cat go.mod go.sum; "$go_cmd" env GOVERSION; echo "$stamp_version"; } | sha256sum | cut -d' ' -f1)"

up_to_date() {
  [[ -f "$release_dir/stamp" && "$(cat "$release_dir/stamp")" == "$stamp" ]] || return 1
  local b
  for b in "${binaries[@]}"; do
    [[ -x "$bin_dir/$b" ]] || return 1
  done
}

if up_to_date; then
  echo "$bin_dir"
  exit 0
fi

# One build at a time per release (two test sessions may call this at once); the loser
# finds the winner's binaries when it gets the lock.
mkdir -p "$release_dir"
exec 9>"$release_dir/.lock"
flock 9
if up_to_date; then
  echo "$bin_dir"
  exit 0
fi

echo "build.sh: building Kubernetes $k8s_version binaries into $bin_dir (cold build takes a while)" >&2
start=$(date +%s)

# /version must report the real release, as the upstream build's hack/lib/version.sh does.
release_time="$("$go_cmd" list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)"
minor="${k8s_version#v1.}"
minor="${minor%%.*}"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$k8s_version"
  ldflags+=" -X $pkg.gitMajor=1"
  ldflags+=" -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean"
  ldflags+=" -X $pkg.buildDate=$release_time"
done

work="$(mktemp -d "$release_dir/.build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
export GOCACHE="${OTACTL_GOCACHE:-$release_dir/.gocache}"

"$go_cmd" mod download
# One go build for the Kubernetes commands and kwok so shared packages compile once.
"$go_cmd" build -trimpath -ldflags "$ldflags" -o "$work/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler \
  k8s.io/kubernetes/cmd/kubectl \
  sigs.k8s.io/kwok/cmd/kwok
# etcd's main package is the module root, so its default binary name would be "v3".
etcd_version="$(awk '$1 == "go.etcd.io/etcd/server/v3" {print $2}' go.mod)"
"$go_cmd" build -trimpath -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$etcd_version" \
  -o "$work/etcd" go.etcd.io/etcd/server/v3

chmod 0755 "$work"
rm -rf "$bin_dir"
mv "$work" "$bin_dir"
trap - EXIT
echo "$stamp" >"$release_dir/stamp"
if [[ -z "${OTACTL_GOCACHE:-}" ]]; then
  # Go marks cached files read-only; make them removable first.
  chmod -R u+w "$GOCACHE" && rm -rf "$GOCACHE"
fi
echo "build.sh: built in $(($(date +%s) - start))s; $(du -sh "$bin_dir" | cut -f1) in $bin_dir" >&2
echo "$bin_dir"
