#!/usr/bin/env bash
# Builds the VM tests' guest image into ${XDG_CACHE_HOME:-$HOME/.cache}/ksboot/guest/ ahead of
# the tests (about a minute; nothing to do when it is cached). Needs root and the packages
# qemu-system-x86 qemu-utils mmdebstrap e2fsprogs; fails, rather than skips, without them.
# Extra arguments go to go test.
set -euo pipefail
cd "$(dirname "$0")/.."
export KSBOOT_VM_REQUIRED="${KSBOOT_VM_REQUIRED:-1}"
exec go test -count=1 -v -timeout 30m -run '^TestGuestImage$' ./test/vm/ "$@"
