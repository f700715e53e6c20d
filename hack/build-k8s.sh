#!/usr/bin/env bash
# Copyright The ksboot Authors.
#
# build-k8s.sh builds real Kubernetes components (and etcd) from their Go modules, once, into
#   ${XDG_CACHE_HOME:-$HOME/.cache}/ksboot/k8s/<VERSION>/bin/
# for tests and hack scripts. Nothing here is product code. Binaries cannot be downloaded on
# the machines this project is built on, but every component is a Go module; the recipe is the
# one in the shared COMPONENTS.md notes.
#
# Usage: hack/build-k8s.sh [VERSION] [NAMES...]
#   VERSION  Kubernetes version, default v1.37.2 (env K8S_VERSION overrides the default).
#   NAMES    any of: kubeadm kubelet kubectl kube-apiserver kube-controller-manager
#            kube-scheduler kube-proxy etcd, or "all". Default: kubeadm.
#   etcd is built at ETCD_VERSION (default v3.6.8) into the same bin directory.
#
# Every build goes to a temporary file that is renamed into place, so a binary in the cache is
# always complete. A lock file serialises concurrent callers (parallel `go test` packages),
# which then find the binary built and skip it. The Go module proxy comes from the
# environment (go env GOPROXY); no host is named here.
#
# On stdout: one line "NAME PATH" per requested binary, after all are built (for scripts;
# test/k8sbin looks at the cache directory instead); progress goes to stderr.
set -euo pipefail

DEFAULT_VERSION="${K8S_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.8}"
ALL_NAMES=(kubeadm kubelet kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy etcd)

log() { printf 'build-k8s: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

version="$DEFAULT_VERSION"
if [[ $# -gt 0 && "$1" =~ ^v[0-9]+\.[0-9]+\.[0-9]+ ]]; then
  version="$1"
  shift
fi
[[ "$version" =~ ^v1\.([0-9]+)\.([0-9]+)$ ]] || die "version ${version}: want v1.MINOR.PATCH (a released Kubernetes version)"
minor="${BASH_REMATCH[1]}"
# Staging modules (k8s.io/api, k8s.io/client-go, ...) are tagged v0.MINOR.PATCH for v1.MINOR.PATCH.
staging_version="v0.${version#v1.}"

names=("$@")
[[ ${#names[@]} -gt 0 ]] || names=(kubeadm)
if [[ " ${names[*]} " == *" all "* ]]; then
  names=("${ALL_NAMES[@]}")
fi
for n in "${names[@]}"; do
  [[ " ${ALL_NAMES[*]} " == *" $n "* ]] || die "unknown component ${n}; known: ${ALL_NAMES[*]} all"
done

command -v go >/dev/null || die "go is not on PATH"
command -v flock >/dev/null || die "flock is not on PATH (Debian package util-linux)"

cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/ksboot/k8s/${version}"
bin_dir="${cache_root}/bin"
mkdir -p "$bin_dir"

# Never let the go command fetch a newer toolchain (a binary download) or pick up a go.work
# from the caller's directory.
export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0
# Builds run in temporary module directories; the caller's GOFLAGS (e.g. -mod=vendor) must not
# change how they resolve.
export GOFLAGS="-buildvcs=false"

# One lock per version directory. Waiting callers block here and then find the work done.
exec 9>"${cache_root}/.lock"
if ! flock -n 9; then
  log "another build holds ${cache_root}/.lock; waiting"
  flock 9
fi

work=""
tmp_bin=""
cleanup() {
  [[ -z "$work" ]] || rm -rf "$work"
  [[ -z "$tmp_bin" ]] || rm -f "$tmp_bin"
}
trap cleanup EXIT
# Make SIGTERM/SIGINT (a test timing out, ^C) run the EXIT trap too.
trap 'exit 143' TERM
trap 'exit 130' INT

# seconds prints whole seconds since $1 (from date +%s).
seconds() { echo $(( $(date +%s) - $1 )); }

# module_file prints the path of the go.mod of module $1 at version $2 in the module cache,
# downloading it (and the module's source) through the configured proxy if needed.
module_file() {
  local json gomod
  # From a module of its own, so that the go command does not walk up into whatever go.mod
  # happens to sit in a parent of the temporary directory.
  mkdir -p "${work}/download"
  [[ -f "${work}/download/go.mod" ]] || echo "module ksboot.local/download" >"${work}/download/go.mod"
  json="$(cd "${work}/download" && go mod download -json "$1@$2")" || die "downloading $1@$2 (go mod download failed; is GOPROXY reachable?)"
  gomod="$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")"
  [[ -n "$gomod" && -f "$gomod" ]] || die "no go.mod for $1@$2 in: ${json}"
  printf '%s\n' "$gomod"
}

# throwaway_module DIR MODULE VERSION PKG...
# Writes DIR/go.mod requiring MODULE@VERSION, with one `replace X => X VERSION'` for every
# `X => ./...` (in-repository) replace of MODULE's own go.mod, where VERSION' is what the
# callback sub_version prints for X. A tools.go imports the packages to build so that
# `go mod tidy` records exactly the sums they need.
throwaway_module() {
  local dir="$1" mod="$2" ver="$3"
  shift 3
  local upstream go_line godebug_lines replaces
  upstream="$(module_file "$mod" "$ver")"
  go_line="$(grep -m1 '^go ' "$upstream")"
  godebug_lines="$(grep '^godebug ' "$upstream" || true)"
  # Lines look like "	k8s.io/api => ./staging/src/k8s.io/api" inside a replace ( ... ) block,
  # or "replace x => ./y" on one line.
  replaces="$(sed -n 's/^\(replace[[:space:]]\{1,\}\)\{0,1\}[[:space:]]*\([^[:space:]]\{1,\}\)[[:space:]]\{1,\}=>[[:space:]]\{1,\}\.\{1,2\}\/.*$/\2/p' "$upstream")"
  [[ -n "$replaces" ]] || log "note: ${mod}@${ver} has no in-repository replace directives"
  mkdir -p "$dir"
  {
    echo "module ksboot.local/build-${mod//\//-}"
    echo
    echo "$go_line"
    [[ -z "$godebug_lines" ]] || { echo; echo "$godebug_lines"; }
    echo
    echo "require ${mod} ${ver}"
    echo
    local r
    for r in $replaces; do
      echo "replace ${r} => ${r} $(sub_version "$r")"
    done
  } >"${dir}/go.mod"
  {
    echo "//go:build tools"
    echo
    echo "package tools"
    echo
    echo "import ("
    local p
    for p in "$@"; do echo "	_ \"${p}\""; done
    echo ")"
  } >"${dir}/tools.go"
  (cd "$dir" && go mod tidy) || die "go mod tidy for ${mod}@${ver} failed (module directory ${dir})"
}

# installed_version NAME PATH prints the first line of what the binary says its version is.
# The whole output is read before it is cut: `| head -n1` would kill the binary with SIGPIPE,
# which pipefail turns into a failure.
installed_version() {
  local out
  case "$1" in
    kubeadm) out="$("$2" version -o short 2>&1)" || true ;;
    kubectl) out="$("$2" version --client 2>&1)" || true ;;
    *) out="$("$2" --version 2>&1)" || true ;;
  esac
  printf '%s\n' "${out%%$'\n'*}"
}

# install_binary NAME TMP moves a finished build into the cache atomically.
install_binary() {
  chmod 0755 "$2"
  mv -f "$2" "${bin_dir}/$1"
}

k8s_module_ready=""
k8s_module() {
  [[ -z "$k8s_module_ready" ]] || return 0
  local start
  start="$(date +%s)"
  log "preparing module k8s.io/kubernetes@${version} (staging modules at ${staging_version})"
  sub_version() { echo "$staging_version"; }
  local pkgs=() n
  for n in "${ALL_NAMES[@]}"; do
    [[ "$n" == etcd ]] || pkgs+=("k8s.io/kubernetes/cmd/${n}")
  done
  throwaway_module "${work}/kubernetes" k8s.io/kubernetes "$version" "${pkgs[@]}"
  log "module ready in $(seconds "$start")s"
  k8s_module_ready=1
}

# kubeadm's HTTPProxyCIDR preflight check, in releases up to at least v1.31, writes the
# service and pod subnets' first IPv4 address in brackets ("https://[10.96.0.1]:1234/"). Go
# 1.24.8 and 1.25.2 made net/url refuse an IPv4 address in brackets (CVE-2025-47912), so such
# a kubeadm built with today's Go fails every `kubeadm init` and `join` on an IPv4 cluster with
# "invalid IP-literal", which the released binaries, built with the Go of their day, never
# did. kubeadm of those releases is therefore built with the last Go before that change,
# which the go command fetches through the module proxy (a toolchain module). Only kubeadm:
# the other components have no such construct and are built with the local Go.
OLD_URL_TOOLCHAIN="${OLD_URL_TOOLCHAIN:-go1.24.7}"
kubeadm_toolchain_cached=""
kubeadm_toolchain() {
  if [[ -z "$kubeadm_toolchain_cached" ]]; then
    local json dir
    mkdir -p "${work}/download"
    [[ -f "${work}/download/go.mod" ]] || echo "module ksboot.local/download" >"${work}/download/go.mod"
    json="$(cd "${work}/download" && go mod download -json "k8s.io/kubernetes@${version}")" ||
      die "downloading k8s.io/kubernetes@${version} (go mod download failed; is GOPROXY reachable?)"
    dir="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")"
    kubeadm_toolchain_cached=local
    if grep -q '"\[%s\]:1234"' "${dir}/cmd/kubeadm/app/preflight/checks.go" 2>/dev/null; then
      kubeadm_toolchain_cached="$OLD_URL_TOOLCHAIN"
    fi
  fi
  echo "$kubeadm_toolchain_cached"
}

build_k8s() {
  local name="$1" start tmp toolchain=local
  k8s_module
  [[ "$name" != kubeadm ]] || toolchain="$(kubeadm_toolchain)"
  [[ "$toolchain" == local ]] || log "building kubeadm ${version} with ${toolchain}: its HTTPProxyCIDR check writes an IPv4 address in brackets, which the local Go's net/url refuses"
  start="$(date +%s)"
  tmp="${bin_dir}/.${name}.tmp.$$"
  tmp_bin="$tmp"
  log "building ${name} ${version} (kubeadm and kube-apiserver take minutes on a cold build cache)"
  # The -X flags give the binaries the real version; without them they report v0.0.0-master
  # and kubeadm's version checks reject the configuration's kubernetesVersion.
  local pkg=k8s.io/component-base/version
  local cpkg=k8s.io/client-go/pkg/version
  local ld="-s -w"
  local p
  for p in "$pkg" "$cpkg"; do
    ld+=" -X ${p}.gitVersion=${version} -X ${p}.gitMajor=1 -X ${p}.gitMinor=${minor}"
    ld+=" -X ${p}.gitTreeState=clean -X ${p}.buildDate=1970-01-01T00:00:00Z"
  done
  if ! (cd "${work}/kubernetes" && GOTOOLCHAIN="$toolchain" go build -trimpath -ldflags "$ld" -o "$tmp" "k8s.io/kubernetes/cmd/${name}"); then
    rm -f "$tmp"
    die "go build k8s.io/kubernetes/cmd/${name}@${version} failed"
  fi
  install_binary "$name" "$tmp"
  log "built ${name} in $(seconds "$start")s: $(installed_version "$name" "${bin_dir}/${name}")"
}

build_etcd() {
  local start tmp
  start="$(date +%s)"
  log "preparing module go.etcd.io/etcd/v3@${ETCD_VERSION}"
  # etcd's sub-modules share the root module's version.
  sub_version() { echo "$ETCD_VERSION"; }
  throwaway_module "${work}/etcd" go.etcd.io/etcd/v3 "$ETCD_VERSION" go.etcd.io/etcd/server/v3
  tmp="${bin_dir}/.etcd.tmp.$$"
  tmp_bin="$tmp"
  log "building etcd ${ETCD_VERSION}"
  if ! (cd "${work}/etcd" && go build -trimpath -ldflags "-s -w" -o "$tmp" go.etcd.io/etcd/server/v3); then
    rm -f "$tmp"
    die "go build go.etcd.io/etcd/server/v3@${ETCD_VERSION} failed"
  fi
  install_binary etcd "$tmp"
  log "built etcd in $(seconds "$start")s: $(installed_version etcd "${bin_dir}/etcd")"
}

# Made here, not in kubeadm_toolchain: that runs in command substitutions (subshells), whose
# assignments the EXIT trap would never see.
work="$(mktemp -d "${TMPDIR:-/tmp}/ksboot-build-k8s.XXXXXX")"
for name in "${names[@]}"; do
  path="${bin_dir}/${name}"
  if [[ -x "$path" ]]; then
    have="$(installed_version "$name" "$path")"
    built_with="$(go version "$path" 2>/dev/null || true)"
    built_with="${built_with##*: }"
    if [[ "$name" == kubeadm && "$(kubeadm_toolchain)" != local && "$built_with" != "$(kubeadm_toolchain)" ]]; then
      log "kubeadm present but built with ${built_with:-an unknown Go}, want $(kubeadm_toolchain); rebuilding"
    elif [[ "$name" != etcd || "$have" == *"${ETCD_VERSION#v}"* ]]; then
      log "${name} present: ${path} (${have})"
      continue
    else
      log "etcd present but reports '${have}', want ${ETCD_VERSION}; rebuilding"
    fi
  fi
  if [[ "$name" == etcd ]]; then
    build_etcd
  else
    build_k8s "$name"
  fi
done

for name in "${names[@]}"; do
  printf '%s %s\n' "$name" "${bin_dir}/${name}"
done
