#!/usr/bin/env bash
# Copyright The ksboot Authors.
#
# build-images.sh builds, once, the container image archives an offline test bundle carries,
# from Go modules and a Debian base made with mmdebstrap (no image can be pulled on the machines
# this project is built on), into
#   ${XDG_CACHE_HOME:-$HOME/.cache}/ksboot/images/<key>/
#     kubernetes-amd64.tar                the images `kubeadm config images list` names for
#                                         K8S_VERSION that every node runs (kube-proxy, CoreDNS, pause)
#     kubernetes-control-plane-amd64.tar  the rest of that list (API server, controller manager,
#                                         scheduler, etcd), which workers skip
#     flannel-amd64.tar                   Flannel's two images, under the names bootstrap/addons uses
#   ${XDG_CACHE_HOME:-$HOME/.cache}/ksboot/images/loadbalancer/<key>/ (only with LOADBALANCER_IMAGES)
#     kube-vip-amd64.tar                  kube-vip under the name versions/loadbalancer.go pins
# All are OCI archives (hack/ociimage, image.WriteImageArchive) for `ctr images import`.
# Nothing here is product code; test set-up (test/bundle) runs it.
#
# What goes into the images:
#   kube-apiserver, kube-controller-manager, kube-scheduler  the binary at /usr/local/bin (kubeadm's
#       static pods run `command: [kube-apiserver, ...]`, so PATH must find it), no base
#   kube-proxy      /usr/local/bin/kube-proxy on the Debian base (iptables, conntrack, ipset, nft)
#   etcd            /usr/local/bin/etcd at the version kubeadm names (3.7.0-0 → v3.7.0); v3.6.8
#                   if that does not build, with a warning
#   coredns         /coredns (ENTRYPOINT; the Deployment passes only args) at kubeadm's tag;
#                   v1.15.0 if that version is not served, with a warning
#   pause           /pause from hack/pause (ENTRYPOINT)
#   flannel         /opt/bin/flanneld (cgo, so on the Debian base for glibc and iptables)
#   flannel-cni-plugin  /flannel, the CNI plugin (init container runs `cp -f /flannel ...`), on
#                   the Debian base (which has cp)
#   kube-vip        /kube-vip (ENTRYPOINT; the static pod passes `manager`), no base: kube-vip's
#                   own image is the binary alone. haproxy is C, with no Go module to build it
#                   from, so no haproxy image is made here.
# Binaries are cached like hack/build-artifacts.sh does it: etcd/<v>/bin, coredns/<v>/bin,
# flannel/<v>/bin, flannel-cni-plugin/<v>/bin, pause/<key>/bin; the Debian root file system
# under images/base/<key>/rootfs.tar. The Kubernetes binaries come from hack/build-k8s.sh.
#
# Usage: hack/build-images.sh
#   Versions come from the environment: K8S_VERSION (v1.37.2), FLANNEL_VERSION (v0.27.4),
#   FLANNEL_CNI_PLUGIN_IMAGE (ghcr.io/flannel-io/flannel-cni-plugin:v1.8.0-flannel1),
#   CNI_FLANNEL_VERSION (v0.9.1, the containernetworking/plugins release that still carries
#   the flannel plugin), COREDNS_FALLBACK_VERSION (v1.15.0), ETCD_FALLBACK_VERSION (v3.6.8),
#   LOADBALANCER_IMAGES ("" or kube-vip: also build the internal load balancer's image, at
#   KUBE_VIP_IMAGE, ghcr.io/kube-vip/kube-vip:v0.7.2), DEBIAN_SUITE (bookworm), DEBIAN_SOURCES (/etc/apt/sources.list.d/debian.sources, the host's
#   own apt sources), SOURCE_DATE_EPOCH (0: image creation and file times).
#
# Idempotent: the key of a cached archive directory covers the versions, the image names, the
# size and time of every input binary, the Debian base and the code that writes the archives;
# a run that finds it prints its lines in seconds. Everything is built in temporary
# directories renamed into place, so a cached directory is always complete; a lock file
# serialises concurrent callers. The module proxy and apt sources come from the environment
# and the host; no host is named here.
#
# On stdout: "kubernetes-images PATH", "kubernetes-control-plane-images PATH",
# "flannel-images PATH" and, with LOADBALANCER_IMAGES=kube-vip, "kube-vip-images PATH"; progress
# on stderr.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
FLANNEL_VERSION="${FLANNEL_VERSION:-v0.27.4}"
FLANNEL_CNI_PLUGIN_IMAGE="${FLANNEL_CNI_PLUGIN_IMAGE:-ghcr.io/flannel-io/flannel-cni-plugin:v1.8.0-flannel1}"
CNI_FLANNEL_VERSION="${CNI_FLANNEL_VERSION:-v0.9.1}"
COREDNS_FALLBACK_VERSION="${COREDNS_FALLBACK_VERSION:-v1.15.0}"
ETCD_FALLBACK_VERSION="${ETCD_FALLBACK_VERSION:-v3.6.8}"
DEBIAN_SUITE="${DEBIAN_SUITE:-bookworm}"
DEBIAN_SOURCES="${DEBIAN_SOURCES:-/etc/apt/sources.list.d/debian.sources}"
SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-0}"
LOADBALANCER_IMAGES="${LOADBALANCER_IMAGES:-}"
KUBE_VIP_IMAGE="${KUBE_VIP_IMAGE:-ghcr.io/kube-vip/kube-vip:v0.7.2}"
FLANNEL_IMAGE="ghcr.io/flannel-io/flannel:${FLANNEL_VERSION}"
ARCH=amd64

# What kube-proxy (iptables and nftables modes) and flanneld execute.
DEBIAN_PACKAGES="iptables,conntrack,ipset,nftables"
# Documentation, manual pages and translations are a third of the base and no container reads
# them; copyright files stay.
DEBIAN_DPKG_OPTS=(
  'path-exclude=/usr/share/man/*' 'path-exclude=/usr/share/info/*'
  'path-exclude=/usr/share/doc/*' 'path-include=/usr/share/doc/*/copyright'
  'path-exclude=/usr/share/locale/*' 'path-include=/usr/share/locale/locale.alias'
  'path-exclude=/usr/share/lintian/*'
)

log() { printf 'build-images: %s\n' "$*" >&2; }
warn() { printf 'build-images: WARNING: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v go >/dev/null || die "go is not on PATH"
command -v flock >/dev/null || die "flock is not on PATH (Debian package util-linux)"
command -v sha256sum >/dev/null || die "sha256sum is not on PATH (Debian package coreutils)"
case "$LOADBALANCER_IMAGES" in
  "" | kube-vip) ;;
  haproxy) die "LOADBALANCER_IMAGES=haproxy: haproxy is written in C and has no Go module to build it from; only kube-vip's image can be built here" ;;
  *) die "LOADBALANCER_IMAGES=${LOADBALANCER_IMAGES}: want kube-vip (or nothing)" ;;
esac
[[ "$SOURCE_DATE_EPOCH" =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH}: want seconds since 1970"

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/ksboot"
images_cache="${cache}/images"
mkdir -p "$images_cache"

# Never fetch a newer toolchain or read the caller's go.work or GOFLAGS.
export GOTOOLCHAIN=local GOWORK=off GOFLAGS="-buildvcs=false"

exec 9>"${images_cache}/.lock"
if ! flock -n 9; then
  log "another build holds ${images_cache}/.lock; waiting"
  flock 9
fi

tmp=""
trap '[[ -z "$tmp" ]] || rm -rf "$tmp"' EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# seconds prints whole seconds since $1 (from date +%s).
seconds() { echo $(( $(date +%s) - $1 )); }

# publish TMPDIR DEST renames a finished temporary directory into place.
publish() {
  chmod 0755 "$1"
  rm -rf "${2}.old"
  [[ ! -e "$2" ]] || mv "$2" "${2}.old"
  mv "$1" "$2"
  rm -rf "${2}.old"
}

# go_install NAME VERSION CGO BIN PKG [VERSION_VAR] installs PKG@VERSION into
# ${cache}/NAME/VERSION/bin unless BIN is there, linking VERSION into the string variable
# VERSION_VAR as the upstream release builds do; returns non-zero (leaving nothing behind) if
# the build fails.
go_install() {
  # -checklinkname=0: releases of the Kubernetes v1.2x era (CoreDNS v1.9.3) pull
  # golang.org/x/net versions that reach syscall internals by go:linkname, which Go 1.23 and
  # later refuse to link by default.
  local name="$1" version="$2" cgo="$3" bin="$4" pkg="$5" ldflags="-s -w -checklinkname=0"
  [[ -z "${6:-}" ]] || ldflags+=" -X ${6}=${version}"
  local dest="${cache}/${name}/${version}/bin" start
  if [[ -x "${dest}/${bin}" ]]; then
    log "${name} ${version}: cached in ${dest}"
    return 0
  fi
  start="$(date +%s)"
  log "${name} ${version}: building ${pkg}@${version}"
  mkdir -p "$(dirname "$dest")"
  tmp="$(mktemp -d "$(dirname "$dest")/.bin.tmp.XXXXXX")"
  # From the temporary directory, so go install never sees a go.mod above it.
  if ! (cd "$tmp" && CGO_ENABLED="$cgo" GOBIN="$tmp" go install -trimpath -ldflags "$ldflags" "${pkg}@${version}") ||
    [[ ! -x "${tmp}/${bin}" ]]; then
    rm -rf "$tmp"
    tmp=""
    log "${name} ${version}: go install ${pkg}@${version} failed after $(seconds "$start")s"
    return 1
  fi
  publish "$tmp" "$dest"
  tmp=""
  log "${name} ${version}: built in $(seconds "$start")s"
}

# build_etcd VERSION builds etcd's server into ${cache}/etcd/VERSION/bin/etcd with the recipe
# of COMPONENTS.md: `go install` refuses etcd (its go.mod has replace directives), so a
# throwaway module requires go.etcd.io/etcd/v3 and pins every in-repository sub-module to the
# same version. Returns non-zero if it does not build.
build_etcd() {
  local version="$1" dest="${cache}/etcd/${1}/bin" start json upstream mods m
  if [[ -x "${dest}/etcd" ]]; then
    log "etcd ${version}: cached in ${dest}"
    return 0
  fi
  start="$(date +%s)"
  log "etcd ${version}: building go.etcd.io/etcd/server/v3 in a throwaway module"
  mkdir -p "$(dirname "$dest")"
  tmp="$(mktemp -d "$(dirname "$dest")/.bin.tmp.XXXXXX")"
  mkdir -p "${tmp}/mod"
  echo "module ksboot.local/build-etcd" >"${tmp}/mod/go.mod"
  if ! json="$(cd "${tmp}/mod" && go mod download -json "go.etcd.io/etcd/v3@${version}")"; then
    rm -rf "$tmp"; tmp=""
    log "etcd ${version}: go.etcd.io/etcd/v3@${version} is not served"
    return 1
  fi
  upstream="$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")"
  # Lines look like "	go.etcd.io/etcd/api/v3 => ./api" in the root module's replace block.
  mods="$(sed -n 's/^[[:space:]]*\(go\.etcd\.io\/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\.\/.*$/\1/p' "$upstream")"
  {
    echo "module ksboot.local/build-etcd"
    echo
    grep -m1 '^go ' "$upstream"
    echo
    echo "require go.etcd.io/etcd/v3 ${version}"
    # etcd 3.5's v2 client module is versioned v2.305.<patch> alongside v3.5.<patch>.
    for m in $mods; do
      case "$m" in
        */v2) echo "replace ${m} => ${m} v2.305.${version##*.}" ;;
        *) echo "replace ${m} => ${m} ${version}" ;;
      esac
    done
  } >"${tmp}/mod/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' >"${tmp}/mod/tools.go"
  if ! (cd "${tmp}/mod" && go mod tidy && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "${tmp}/etcd" go.etcd.io/etcd/server/v3); then
    rm -rf "$tmp"; tmp=""
    log "etcd ${version}: build failed after $(seconds "$start")s"
    return 1
  fi
  rm -rf "${tmp}/mod"
  publish "$tmp" "$dest"
  tmp=""
  log "etcd ${version}: built in $(seconds "$start")s: $("${dest}/etcd" --version 2>&1 | head -n1 || true)"
}

# build_in_module NAME VERSION MODULE PKG BIN builds PKG (a main package of MODULE@VERSION) into
# ${cache}/NAME/VERSION/bin/BIN from a throwaway module that requires MODULE@VERSION. `go install
# PKG@VERSION` would be shorter, but it also reads the module's version list (for its
# deprecation check), and a proxy that serves the version without listing it makes it fail
# (kube-vip's). Returns non-zero (leaving nothing behind) if the build fails.
build_in_module() {
  local name="$1" version="$2" module="$3" pkg="$4" bin="$5" dest="${cache}/${1}/${2}/bin" start
  if [[ -x "${dest}/${bin}" ]]; then
    log "${name} ${version}: cached in ${dest}"
    return 0
  fi
  start="$(date +%s)"
  log "${name} ${version}: building ${pkg} in a throwaway module requiring ${module}@${version}"
  mkdir -p "$(dirname "$dest")"
  tmp="$(mktemp -d "$(dirname "$dest")/.bin.tmp.XXXXXX")"
  mkdir -p "${tmp}/mod"
  printf 'module ksboot.local/build-%s\n\nrequire %s %s\n' "$name" "$module" "$version" >"${tmp}/mod/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$pkg" >"${tmp}/mod/tools.go"
  if ! (cd "${tmp}/mod" && go mod tidy && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -checklinkname=0" -o "${tmp}/${bin}" "$pkg"); then
    rm -rf "$tmp"; tmp=""
    log "${name} ${version}: build failed after $(seconds "$start")s"
    return 1
  fi
  rm -rf "${tmp}/mod"
  publish "$tmp" "$dest"
  tmp=""
  log "${name} ${version}: built in $(seconds "$start")s"
}

# attempt NAME VERSION FUNC ARGS... runs a build once per version: a failure is remembered in
# ${cache}/NAME/VERSION.failed so later runs go straight to the fallback (and stay fast).
attempt() {
  local name="$1" version="$2"
  shift 2
  local marker="${cache}/${name}/${version}.failed"
  if [[ -e "$marker" ]]; then
    log "${name} ${version}: failed before (remove ${marker} to try again)"
    return 1
  fi
  if "$@"; then
    return 0
  fi
  mkdir -p "$(dirname "$marker")"
  date -u +%FT%TZ >"$marker"
  return 1
}

# --- Debian base --------------------------------------------------------------------------------
# debian_base sets base to the cached root file system tarball, building it if needed.
debian_base() {
  command -v mmdebstrap >/dev/null || die "mmdebstrap is not on PATH (Debian package mmdebstrap; hack/install-deps.sh installs it)"
  [[ -r "$DEBIAN_SOURCES" ]] || die "apt sources ${DEBIAN_SOURCES} not readable; set DEBIAN_SOURCES to a deb822 .sources or a sources.list file"
  # The merged-usr hooks satisfy init-system-helpers' "usrmerge | usr-is-merged" with
  # usr-is-merged; apt would otherwise pick usrmerge, which pulls in all of perl (+20 MiB).
  local key dest start o args=(--variant=essential "--include=${DEBIAN_PACKAGES}" --aptopt='Acquire::Retries "3"'
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr)
  for o in "${DEBIAN_DPKG_OPTS[@]}"; do args+=("--dpkgopt=${o}"); done
  key="$( { echo "v1 ${ARCH} ${DEBIAN_SUITE} ${SOURCE_DATE_EPOCH}"; printf '%s\n' "${args[@]}"; cat "$DEBIAN_SOURCES"; } | sha256sum | cut -c1-16)"
  dest="${images_cache}/base/${key}"
  base="${dest}/rootfs.tar"
  if [[ -f "$base" ]]; then
    log "debian base: cached in ${dest}"
    return 0
  fi
  start="$(date +%s)"
  log "debian base: mmdebstrap ${DEBIAN_SUITE} with ${DEBIAN_PACKAGES} (about a minute)"
  mkdir -p "$(dirname "$dest")"
  tmp="$(mktemp -d "$(dirname "$dest")/.tmp.XXXXXX")"
  # Its hooks chatter through dpkg even with --quiet: the log is shown only on failure.
  if ! SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" mmdebstrap --quiet "--architectures=${ARCH}" "${args[@]}" \
    "$DEBIAN_SUITE" "${tmp}/rootfs.tar" "$DEBIAN_SOURCES" >"${tmp}/mmdebstrap.log" 2>&1; then
    cat "${tmp}/mmdebstrap.log" >&2
    die "mmdebstrap failed"
  fi
  rm -f "${tmp}/mmdebstrap.log"
  publish "$tmp" "$dest"
  tmp=""
  log "debian base: built in $(seconds "$start")s ($(( $(stat -c %s "$base") >> 20 )) MiB uncompressed)"
}

# --- the binaries -------------------------------------------------------------------------------
step="$(date +%s)"
k8s_bin="${cache}/k8s/${K8S_VERSION}/bin"
"${here}/build-k8s.sh" "$K8S_VERSION" kubeadm kube-apiserver kube-controller-manager kube-scheduler kube-proxy >/dev/null
log "kubernetes ${K8S_VERSION} binaries ready in $(seconds "$step")s"

# The image names are kubeadm's, never a copy: a kubeadm that asks for another tag must get it.
refs_out="$("${k8s_bin}/kubeadm" config images list --kubernetes-version "$K8S_VERSION")" ||
  die "kubeadm config images list --kubernetes-version ${K8S_VERSION} failed"
mapfile -t k8s_refs <<<"$refs_out"
[[ -n "${k8s_refs[0]}" ]] || die "kubeadm config images list --kubernetes-version ${K8S_VERSION} printed nothing"
log "kubeadm ${K8S_VERSION} lists: ${k8s_refs[*]}"

# bootstrap/addons/flannel.go names the Flannel images; a mismatch would leave the bundle's
# Flannel pods pulling from a registry the node cannot reach.
for ref in "$FLANNEL_IMAGE" "$FLANNEL_CNI_PLUGIN_IMAGE"; do
  grep -q -F -e "${ref##*:}" "${repo}/bootstrap/addons/flannel.go" ||
    warn "${ref}: tag ${ref##*:} not found in bootstrap/addons/flannel.go; the DaemonSet asks for another image"
done

base=""
json_str() { local s="${1//\\/\\\\}"; printf '"%s"' "${s//\"/\\\"}"; }
# image_json REF BASE ENTRYPOINT SRC:DST... prints one image of the ociimage spec.
image_json() {
  local ref="$1" base_tar="$2" entry="$3" f sep=""
  shift 3
  printf '{"ref": %s, "arch": "%s"' "$(json_str "$ref")" "$ARCH"
  [[ -z "$base_tar" ]] || printf ', "base": %s' "$(json_str "$base_tar")"
  printf ', "entrypoint": [%s], "files": [' "$(json_str "$entry")"
  for f in "$@"; do
    printf '%s{"src": %s, "dst": %s}' "$sep" "$(json_str "${f%%:*}")" "$(json_str "${f#*:}")"
    sep=", "
  done
  printf ']}'
}

inputs=() # every input file, for the cache key
k8s_images=()
# Control-plane images go to an archive of their own: workers skip it (bootstrap/install
# imports only what a node runs), which saves minutes on small machines.
cp_images=()
add_image() { # COMPONENT JSON
  case "$1" in
    kube-apiserver | kube-controller-manager | kube-scheduler | etcd) cp_images+=("$2") ;;
    *) k8s_images+=("$2") ;;
  esac
}
for ref in "${k8s_refs[@]}"; do
  repo_name="${ref%:*}" tag="${ref##*:}"
  component="${repo_name##*/}"
  step="$(date +%s)"
  case "$component" in
    kube-apiserver | kube-controller-manager | kube-scheduler)
      src="${k8s_bin}/${component}"
      add_image "$component" "$(image_json "$ref" "" "/usr/local/bin/${component}" "${src}:/usr/local/bin/${component}")"
      ;;
    kube-proxy)
      [[ -n "$base" ]] || debian_base
      src="${k8s_bin}/kube-proxy"
      add_image kube-proxy "$(image_json "$ref" "$base" /usr/local/bin/kube-proxy "${src}:/usr/local/bin/kube-proxy")"
      ;;
    etcd)
      # registry.k8s.io/etcd tags are "<etcd version>-<image revision>".
      etcd_version="v${tag%-*}"
      if ! attempt etcd "$etcd_version" build_etcd "$etcd_version"; then
        warn "etcd ${etcd_version} (kubeadm's ${ref}) does not build here; FALLING BACK to etcd ${ETCD_FALLBACK_VERSION} under the name ${ref}"
        etcd_version="$ETCD_FALLBACK_VERSION"
        build_etcd "$etcd_version" || die "etcd ${etcd_version} does not build either"
      fi
      src="${cache}/etcd/${etcd_version}/bin/etcd"
      add_image etcd "$(image_json "$ref" "" /usr/local/bin/etcd "${src}:/usr/local/bin/etcd")"
      ;;
    coredns)
      coredns_version="$tag"
      if ! attempt coredns "$coredns_version" go_install coredns "$coredns_version" 0 coredns github.com/coredns/coredns; then
        warn "coredns ${coredns_version} (kubeadm's ${ref}) is not available here; FALLING BACK to coredns ${COREDNS_FALLBACK_VERSION} under the name ${ref}"
        coredns_version="$COREDNS_FALLBACK_VERSION"
        go_install coredns "$coredns_version" 0 coredns github.com/coredns/coredns || die "coredns ${coredns_version} does not build either"
      fi
      src="${cache}/coredns/${coredns_version}/bin/coredns"
      add_image coredns "$(image_json "$ref" "" /coredns "${src}:/coredns")"
      ;;
    pause)
      # Built from this repository: the key is its source and the toolchain.
      pause_key="$( { go version; cat "${repo}/hack/pause/main.go"; } | sha256sum | cut -c1-16)"
      src="${cache}/pause/${pause_key}/bin/pause"
      if [[ -x "$src" ]]; then
        log "pause: cached in $(dirname "$src")"
      else
        mkdir -p "${cache}/pause/${pause_key}"
        tmp="$(mktemp -d "${cache}/pause/.bin.tmp.XXXXXX")"
        (cd "$repo" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "${tmp}/pause" ./hack/pause) || die "building hack/pause failed"
        publish "$tmp" "$(dirname "$src")"
        tmp=""
      fi
      add_image pause "$(image_json "$ref" "" /pause "${src}:/pause")"
      ;;
    *)
      die "kubeadm lists ${ref}; this script does not know how to build ${component}"
      ;;
  esac
  inputs+=("$src")
  log "${component}: ready in $(seconds "$step")s"
done

step="$(date +%s)"
[[ -n "$base" ]] || debian_base
# flanneld needs cgo (its udp backend); the Debian base provides glibc.
go_install flannel "$FLANNEL_VERSION" 1 flannel github.com/flannel-io/flannel \
  github.com/flannel-io/flannel/pkg/version.Version || die "flanneld ${FLANNEL_VERSION} does not build"
go_install flannel-cni-plugin "$CNI_FLANNEL_VERSION" 0 flannel github.com/containernetworking/plugins/plugins/meta/flannel \
  github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion ||
  die "the flannel CNI plugin (containernetworking/plugins ${CNI_FLANNEL_VERSION}) does not build"
flanneld="${cache}/flannel/${FLANNEL_VERSION}/bin/flannel"
cni_flannel="${cache}/flannel-cni-plugin/${CNI_FLANNEL_VERSION}/bin/flannel"
inputs+=("$flanneld" "$cni_flannel" "$base")
flannel_images=(
  "$(image_json "$FLANNEL_IMAGE" "$base" /opt/bin/flanneld "${flanneld}:/opt/bin/flanneld")"
  "$(image_json "$FLANNEL_CNI_PLUGIN_IMAGE" "$base" /flannel "${cni_flannel}:/flannel")"
)
log "flannel binaries ready in $(seconds "$step")s"

# --- the archives -------------------------------------------------------------------------------
# The key covers what the archives are made of and the code that writes them. Input binaries
# are identified by size and modification time (hashing 600 MiB would cost seconds per run);
# every cache above replaces a file only by building it anew.
key="$(
  {
    echo "v1 ${ARCH} ${SOURCE_DATE_EPOCH} $(go version)"
    printf '%s\n' "${k8s_images[@]}" "${cp_images[@]}" "${flannel_images[@]}"
    for f in "${inputs[@]}"; do echo "$f $(stat -L -c '%s %Y' "$f")"; done
    cat "${repo}/hack/ociimage/main.go" "${repo}/image/ociarchive.go"
  } | sha256sum | cut -c1-16
)"
final="${images_cache}/${key}"
if [[ ! -f "${final}/kubernetes-${ARCH}.tar" || ! -f "${final}/kubernetes-control-plane-${ARCH}.tar" || ! -f "${final}/flannel-${ARCH}.tar" ]]; then
  step="$(date +%s)"
  tmp="$(mktemp -d "${images_cache}/.tmp.XXXXXX")"
  join() { local IFS=,; echo "$*"; }
  cat >"${tmp}/spec.json" <<EOF
{"created": ${SOURCE_DATE_EPOCH},
 "archives": [
  {"path": $(json_str "${tmp}/kubernetes-${ARCH}.tar"), "images": [$(join "${k8s_images[@]}")]},
  {"path": $(json_str "${tmp}/kubernetes-control-plane-${ARCH}.tar"), "images": [$(join "${cp_images[@]}")]},
  {"path": $(json_str "${tmp}/flannel-${ARCH}.tar"), "images": [$(join "${flannel_images[@]}")]}
 ]}
EOF
  log "writing image archives (compressing $(stat -L -c %s "${inputs[@]}" | awk '{s+=$1} END {printf "%d", s/1048576}') MiB of layers)"
  (cd "$repo" && go run ./hack/ociimage -spec "${tmp}/spec.json" -work "${tmp}/work") || die "hack/ociimage failed"
  rm -rf "${tmp}/work"
  # The spec paths point into the temporary directory; keep the spec for what it lists.
  publish "$tmp" "$final"
  tmp=""
  log "archives written in $(seconds "$step")s"
  # Keep the three newest archive sets: each is a few hundred MiB.
  n=0
  while read -r old; do
    [[ "$(basename "$old")" =~ ^[0-9a-f]{16}$ ]] || continue
    n=$((n + 1))
    [[ $n -gt 3 ]] || continue
    log "removing old archives ${old}"
    rm -rf "$old"
  done < <(ls -1dt "${images_cache}"/*/)
else
  log "archives cached in ${final}"
fi
for n in kubernetes kubernetes-control-plane flannel; do
  log "${n}-${ARCH}.tar: $(( $(stat -c %s "${final}/${n}-${ARCH}.tar") >> 20 )) MiB"
  echo "${n}-images ${final}/${n}-${ARCH}.tar"
done

# --- the internal load balancer's image (LOADBALANCER_IMAGES=kube-vip) ---------------------------
# In a directory of its own (images/loadbalancer/<key>), outside the pruning above: only the
# scenarios with an internal load balancer ask for it.
if [[ "$LOADBALANCER_IMAGES" == kube-vip ]]; then
  kube_vip_version="${KUBE_VIP_IMAGE##*:}"
  build_in_module kube-vip "$kube_vip_version" github.com/kube-vip/kube-vip github.com/kube-vip/kube-vip kube-vip ||
    die "kube-vip ${kube_vip_version} does not build"
  src="${cache}/kube-vip/${kube_vip_version}/bin/kube-vip"
  lb_images=("$(image_json "$KUBE_VIP_IMAGE" "" /kube-vip "${src}:/kube-vip")")
  lb_key="$(
    {
      echo "v1 ${ARCH} ${SOURCE_DATE_EPOCH} $(go version)"
      printf '%s\n' "${lb_images[@]}"
      echo "$src $(stat -L -c '%s %Y' "$src")"
      cat "${repo}/hack/ociimage/main.go" "${repo}/image/ociarchive.go"
    } | sha256sum | cut -c1-16
  )"
  lb_final="${images_cache}/loadbalancer/${lb_key}"
  if [[ ! -f "${lb_final}/kube-vip-${ARCH}.tar" ]]; then
    mkdir -p "${images_cache}/loadbalancer"
    tmp="$(mktemp -d "${images_cache}/loadbalancer/.tmp.XXXXXX")"
    printf '{"created": %s, "archives": [{"path": %s, "images": [%s]}]}\n' "$SOURCE_DATE_EPOCH" \
      "$(json_str "${tmp}/kube-vip-${ARCH}.tar")" "${lb_images[0]}" >"${tmp}/spec.json"
    (cd "$repo" && go run ./hack/ociimage -spec "${tmp}/spec.json" -work "${tmp}/work") || die "hack/ociimage failed (kube-vip)"
    rm -rf "${tmp}/work"
    publish "$tmp" "$lb_final"
    tmp=""
  fi
  log "kube-vip-${ARCH}.tar: $(( $(stat -c %s "${lb_final}/kube-vip-${ARCH}.tar") >> 20 )) MiB"
  echo "kube-vip-images ${lb_final}/kube-vip-${ARCH}.tar"
fi
