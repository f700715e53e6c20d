#!/usr/bin/env bash
# Copyright The ksboot Authors.
#
# build-artifacts.sh builds, once, every binary an offline bundle carries, from the components'
# Go modules (the recipe of the shared COMPONENTS.md notes), into
#   ${XDG_CACHE_HOME:-$HOME/.cache}/ksboot/
#     k8s/<K8S_VERSION>/bin/{kubeadm,kubelet,kubectl}      (through hack/build-k8s.sh)
#     containerd/<v>/bin/{containerd,ctr,containerd-shim-runc-v2}
#     runc/<v>-static-seccomp/bin/runc                    (static, with seccomp, as released)
#     cri-tools/<v>/bin/crictl
#     cni-plugins/<v>/bin/{bridge,host-local,loopback,portmap,...}
# Nothing here is product code: release downloads are unreachable on the machines this project
# is built on, but every component is a Go module. Test set-up (test/install) runs it.
#
# Usage: hack/build-artifacts.sh
#   Versions come from the environment: K8S_VERSION (v1.37.2), CONTAINERD_VERSION (v2.4.2),
#   RUNC_VERSION (v1.5.2), CRICTL_VERSION (v1.37.0), CNI_PLUGINS_VERSION (v1.10.0); keep them
#   equal to the defaults in bootstrap/install/artifacts.
#
# Idempotent: a component whose binaries are all in the cache is not rebuilt. Each component is
# built into a temporary directory and renamed into place, so a cached directory is always
# complete; a lock file serialises concurrent callers. The module proxy comes from the
# environment (go env GOPROXY); no host is named here.
#
# On stdout: one line "NAME DIR" per component, DIR holding its binaries; progress on stderr.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
CONTAINERD_VERSION="${CONTAINERD_VERSION:-v2.4.2}"
RUNC_VERSION="${RUNC_VERSION:-v1.5.2}"
CRICTL_VERSION="${CRICTL_VERSION:-v1.37.0}"
CNI_PLUGINS_VERSION="${CNI_PLUGINS_VERSION:-v1.10.0}"

# The CNI plugins upstream's release tarball holds (linux), by their package under plugins/.
CNI_PLUGINS=(main/bridge main/dummy main/host-device main/ipvlan main/loopback main/macvlan main/ptp
  main/tap main/vlan ipam/dhcp ipam/host-local ipam/static meta/bandwidth meta/firewall
  meta/portmap meta/sbr meta/tuning meta/vrf)

log() { printf 'build-artifacts: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v go >/dev/null || die "go is not on PATH"
command -v flock >/dev/null || die "flock is not on PATH (Debian package util-linux)"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/ksboot"
mkdir -p "$cache"

# Never fetch a newer toolchain or read the caller's go.work or GOFLAGS.
export GOTOOLCHAIN=local GOWORK=off GOFLAGS="-buildvcs=false"

exec 9>"${cache}/.build-artifacts.lock"
if ! flock -n 9; then
  log "another build holds ${cache}/.build-artifacts.lock; waiting"
  flock 9
fi

tmp=""
# Build tags and a cache-directory suffix for a build with a non-default recipe (runc below).
tags="" variant=""
trap '[[ -z "$tmp" ]] || rm -rf "$tmp"' EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# build NAME VERSION CGO LDFLAGS BINARIES PKG... installs the packages (PKG@VERSION each) into
# ${cache}/NAME/VERSION/bin unless every binary in the space-separated list BINARIES is there.
build() {
  local name="$1" version="$2" cgo="$3" ldflags="$4" bins="$5"
  shift 5
  local dest="${cache}/${name}/${version}${variant}/bin" b missing=""
  for b in $bins; do
    [[ -x "${dest}/${b}" ]] || missing+=" $b"
  done
  if [[ -z "$missing" ]]; then
    log "${name} ${version}: cached in ${dest}"
    echo "${name} ${dest}"
    return 0
  fi
  local start
  start="$(date +%s)"
  log "${name} ${version}: building (missing:${missing})"
  mkdir -p "$(dirname "$dest")"
  tmp="$(mktemp -d "$(dirname "$dest")/.bin.tmp.XXXXXX")"
  local p args=()
  for p in "$@"; do args+=("${p}@${version}"); done
  # A module directory of its own, so go install never sees a go.mod above the temp dir.
  (cd "$tmp" && CGO_ENABLED="$cgo" GOBIN="$tmp" go install -trimpath -tags "$tags" -ldflags "$ldflags" "${args[@]}") ||
    die "go install ${args[*]} failed"
  for b in $bins; do
    [[ -x "${tmp}/${b}" ]] || die "${name}: go install made no ${b}"
  done
  # Keep what is already there (other binaries of the same component) and add the new set.
  if [[ -d "$dest" ]]; then
    for b in "$dest"/*; do [[ -e "$b" && ! -e "${tmp}/$(basename "$b")" ]] && cp -p "$b" "$tmp/"; done
    rm -rf "${dest}.old"
    mv "$dest" "${dest}.old"
  fi
  chmod 0755 "$tmp"
  mv "$tmp" "$dest"
  tmp=""
  rm -rf "${dest}.old"
  log "${name} ${version}: built in $(( $(date +%s) - start ))s"
  echo "${name} ${dest}"
}

"${here}/build-k8s.sh" "$K8S_VERSION" kubeadm kubelet kubectl >/dev/null
echo "kubernetes ${cache}/k8s/${K8S_VERSION}/bin"

build containerd "$CONTAINERD_VERSION" 0 "-s -w" "containerd ctr containerd-shim-runc-v2" \
  github.com/containerd/containerd/v2/cmd/containerd \
  github.com/containerd/containerd/v2/cmd/ctr \
  github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2
# runc's nsenter is C: it needs cgo (and a C compiler). Like upstream's release binary (make
# static) it is linked statically with libseccomp: without the seccomp tag runc refuses every
# container that has a seccomp profile ("config provided but seccomp not supported"), and
# containerd gives the pod sandbox one.
tags="seccomp netgo osusergo urfave_cli_no_docs" variant="-static-seccomp"
build runc "$RUNC_VERSION" 1 "-s -w -extldflags -static" runc github.com/opencontainers/runc
tags="" variant=""
# crictl reports "unknown" unless its release version is linked in, as its Makefile does.
build cri-tools "$CRICTL_VERSION" 0 "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=${CRICTL_VERSION}" crictl \
  sigs.k8s.io/cri-tools/cmd/crictl
cni_pkgs=() cni_bins=""
for p in "${CNI_PLUGINS[@]}"; do
  cni_pkgs+=("github.com/containernetworking/plugins/plugins/${p}")
  cni_bins+=" ${p#*/}"
done
build cni-plugins "$CNI_PLUGINS_VERSION" 0 "-s -w" "$cni_bins" "${cni_pkgs[@]}"
