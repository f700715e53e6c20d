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
# Build tags and a cache-directory suffix for a build with a non-default recipe (runc below);
# module, when set, builds in a throwaway module requiring it (containerd 1.x below);
# src_version, when set, is the release built in place of the one asked for (crictl below).
tags="" variant="" module="" src_version=""
trap '[[ -z "$tmp" ]] || rm -rf "$tmp"' EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# build NAME VERSION CGO LDFLAGS BINARIES PKG... installs the packages (PKG@VERSION each) into
# ${cache}/NAME/VERSION/bin unless every binary in the space-separated list BINARIES is there.
build() {
  local name="$1" version="$2" cgo="$3" ldflags="$4" bins="$5"
  shift 5
  local src="${src_version:-$version}"
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
  if [[ -n "$module" ]]; then
    # go install pkg@version refuses a module whose go.mod has exclude or replace
    # directives (containerd 1.7 excludes one version of a dependency): build inside a
    # throwaway module that requires it and carries those directives over.
    throwaway_module "${tmp}/.mod" "$module" "$src" "$@"
    (cd "${tmp}/.mod" && CGO_ENABLED="$cgo" go build -trimpath -tags "$tags" -ldflags "$ldflags" -o "${tmp}/" "$@") ||
      die "go build $* (${module}@${src}) failed"
    rm -rf "${tmp}/.mod"
  else
    for p in "$@"; do args+=("${p}@${src}"); done
    # A module directory of its own, so go install never sees a go.mod above the temp dir.
    (cd "$tmp" && CGO_ENABLED="$cgo" GOBIN="$tmp" go install -trimpath -tags "$tags" -ldflags "$ldflags" "${args[@]}") ||
      die "go install ${args[*]} failed"
  fi
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

# throwaway_module DIR MODULE VERSION PKG... writes DIR/go.mod requiring MODULE@VERSION with
# the go line and the exclude directives of MODULE's own go.mod (a module with in-repository
# replace directives is hack/build-k8s.sh's business), and a tools.go importing the packages
# so that `go mod tidy` records exactly the sums they need.
throwaway_module() {
  local dir="$1" mod="$2" ver="$3" json upstream p
  shift 3
  mkdir -p "$dir"
  echo "module ksboot.local/build" >"${dir}/go.mod"
  json="$(cd "$dir" && go mod download -json "${mod}@${ver}")" || die "downloading ${mod}@${ver} (go mod download failed; is GOPROXY reachable?)"
  upstream="$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")"
  [[ -f "$upstream" ]] || die "no go.mod for ${mod}@${ver} in: ${json}"
  ! grep -Eq '^[[:space:]]*(replace[[:space:]]+)?[^[:space:]]+[[:space:]]+=>[[:space:]]+\.' "$upstream" ||
    die "${mod}@${ver} replaces modules with directories of its own repository; build it like hack/build-k8s.sh does"
  {
    echo "module ksboot.local/build"
    echo
    grep -m1 '^go ' "$upstream"
    echo
    echo "require ${mod} ${ver}"
    echo
    # One-line and block exclude directives alike.
    awk '/^exclude \(/ {b = 1} b || /^exclude / {print} b && /^\)/ {b = 0}' "$upstream"
  } >"${dir}/go.mod"
  { echo "//go:build tools"; echo; echo "package tools"; echo; echo "import ("
    for p in "$@"; do echo "	_ \"${p}\""; done
    echo ")"; } >"${dir}/tools.go"
  (cd "$dir" && go mod tidy) || die "go mod tidy for ${mod}@${ver} failed (module directory ${dir})"
}

"${here}/build-k8s.sh" "$K8S_VERSION" kubeadm kubelet kubectl >/dev/null
echo "kubernetes ${cache}/k8s/${K8S_VERSION}/bin"

# containerd 2.x is the module github.com/containerd/containerd/v2; 1.x (the version matrix's
# line for Kubernetes v1.24 to v1.29) is github.com/containerd/containerd, whose go.mod has an
# exclude directive. Its version package is linked in as its Makefile does.
ctd_module=github.com/containerd/containerd
[[ "$CONTAINERD_VERSION" == v1.* ]] || ctd_module+=/v2
[[ "$CONTAINERD_VERSION" != v1.* ]] || module="$ctd_module"
build containerd "$CONTAINERD_VERSION" 0 "-s -w -X ${ctd_module}/version.Version=${CONTAINERD_VERSION}" "containerd ctr containerd-shim-runc-v2" \
  "${ctd_module}/cmd/containerd" "${ctd_module}/cmd/ctr" "${ctd_module}/cmd/containerd-shim-runc-v2"
module=""
# runc's nsenter is C: it needs cgo (and a C compiler). Like upstream's release binary (make
# static) it is linked statically with libseccomp: without the seccomp tag runc refuses every
# container that has a seccomp profile ("config provided but seccomp not supported"), and
# containerd gives the pod sandbox one.
tags="seccomp netgo osusergo urfave_cli_no_docs" variant="-static-seccomp"
build runc "$RUNC_VERSION" 1 "-s -w -extldflags -static" runc github.com/opencontainers/runc
tags="" variant=""
# crictl reports "unknown" unless its release version is linked in, as its Makefile does.
# The module proxy serves only a few cri-tools releases (v1.34.0, v1.36.0, v1.37.0 when this
# was written); for a row of the version matrix whose crictl it does not serve (v1.26.1 for
# Kubernetes v1.26), the nearest served release is built instead, with a WARNING, and filed
# under the matrix's version in a directory that names both (cri-tools/v1.26.1-from-v1.34.0),
# with the matrix's version linked in, because the agent checks the version it installs: the
# test bundle must carry a crictl under the name the product asks for. crictl speaks CRI v1
# to any containerd of the matrix, and kubeadm before v1.27 calls only its long-stable
# subcommands (ps, pull, images, rm, info).
served() { (cd "$(mktemp -d -p "$cache")" && trap 'rm -rf "$PWD"' EXIT && echo "module probe" >go.mod && go mod download -json "$1@$2" >/dev/null 2>&1); }
fallbacks="${CRICTL_FALLBACK_VERSIONS:-v1.34.0 v1.36.0 v1.37.0}"
cached_fallback="$(ls -d "${cache}/cri-tools/${CRICTL_VERSION}"-from-*/bin/crictl 2>/dev/null | head -n1 || true)"
if [[ -n "$cached_fallback" ]]; then
  src_version="${cached_fallback#"${cache}/cri-tools/${CRICTL_VERSION}-from-"}"
  src_version="${src_version%%/*}"
elif [[ ! -x "${cache}/cri-tools/${CRICTL_VERSION}/bin/crictl" ]] && ! served sigs.k8s.io/cri-tools "$CRICTL_VERSION"; then
  for v in $fallbacks; do
    if served sigs.k8s.io/cri-tools "$v"; then src_version="$v"; break; fi
  done
  [[ -n "$src_version" ]] || die "cri-tools ${CRICTL_VERSION} is not served, nor any of ${fallbacks}"
fi
if [[ -n "$src_version" ]]; then
  log "WARNING: cri-tools ${CRICTL_VERSION} is not served by the module proxy; FALLING BACK to crictl ${src_version} under the name ${CRICTL_VERSION}"
  variant="-from-${src_version}"
fi
build cri-tools "$CRICTL_VERSION" 0 "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=${CRICTL_VERSION}" crictl \
  sigs.k8s.io/cri-tools/cmd/crictl
src_version=""
variant=""
cni_pkgs=() cni_bins=""
for p in "${CNI_PLUGINS[@]}"; do
  cni_pkgs+=("github.com/containernetworking/plugins/plugins/${p}")
  cni_bins+=" ${p#*/}"
done
build cni-plugins "$CNI_PLUGINS_VERSION" 0 "-s -w" "$cni_bins" "${cni_pkgs[@]}"
