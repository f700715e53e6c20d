#!/usr/bin/env bash
# Installs everything `make test` and `make verify` need on Debian 12 / Ubuntu 22.04+ (run as root
# or with sudo). Packages come from the host's configured apt sources; Go tools from the Go proxy.
set -euo pipefail
pkgs=(
  xorriso genisoimage mtools dosfstools util-linux e2fsprogs   # read seed media back (ISO, FAT), debugfs
  cloud-init cloud-image-utils                     # cloud-init schema / net-convert, cloud-localds
  systemd                                          # systemd-analyze verify: the seed's units at boot
  qemu-system-x86 qemu-utils mmdebstrap            # real guests under TCG
  iproute2 ca-certificates git make                # network namespaces, tc netem
  dnsmasq-base                                     # DHCP on the e2e suite's private guest segment
  haproxy                                          # haproxy -c judges the internal load balancer's haproxy.cfg
  gcc libc6-dev libseccomp-dev                     # cgo: runc with seccomp (build-artifacts.sh), flanneld
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# cloud-init is installed only as a judge of what ksboot renders; it must never run on this host.
$SUDO mkdir -p /etc/cloud && $SUDO touch /etc/cloud/cloud-init.disabled
# haproxy likewise only judges configurations; its own service has no business running here.
$SUDO systemctl disable --now haproxy >/dev/null 2>&1 || true
if ! command -v staticcheck >/dev/null 2>&1 && [ ! -x "$(go env GOPATH)/bin/staticcheck" ]; then
  echo "installing staticcheck"
  go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
fi
