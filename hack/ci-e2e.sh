#!/usr/bin/env bash
# Copyright The ksboot Authors.
#
# ci-e2e.sh runs Scenario 1 of the black-box suite (test/e2e/scenarios/mdns-cluster.yaml: three
# qemu guests form a cluster by mDNS) from .ci/run when the machine can: when the time left in
# CI's budget covers what the scenario takes. Otherwise it says why it skips and exits 0;
# `make e2e` runs every scenario without a budget.
#
# Usage: CI_STARTED=<epoch seconds> hack/ci-e2e.sh
#   KSBOOT_CI_BUDGET_MIN   CI's limit in minutes (60)
#   KSBOOT_CI_MARGIN_MIN   kept free for what follows and for a slow run (10)
#   KSBOOT_E2E_ESTIMATE_MIN  minutes the scenario may take here, set-up included (90): its
#                          75-minute deadline plus a cold set-up. On the 2-core development
#                          machine under TCG it passed in 33 minutes (run 13), but runs 7 and 8
#                          had not converged after 52 and 55, so CI's 60 minutes cannot hold it
#                          there. Another host of the same size ran it in 12 to 17 minutes
#                          (runs 26-28), but machines of one kind differ twofold and a run
#                          that does not converge holds CI for the whole deadline; a machine
#                          with more cores or KVM should lower this after measuring. Set
#                          KSBOOT_CI_E2E=1 to run regardless, KSBOOT_CI_E2E=0 to never run.
set -euo pipefail
cd "$(dirname "$0")/.."
budget="${KSBOOT_CI_BUDGET_MIN:-60}"
margin="${KSBOOT_CI_MARGIN_MIN:-10}"
estimate="${KSBOOT_E2E_ESTIMATE_MIN:-90}"
started="${CI_STARTED:-$(date +%s)}"
elapsed=$(( ($(date +%s) - started) / 60 ))
left=$(( budget - margin - elapsed ))
case "${KSBOOT_CI_E2E:-auto}" in
  0) echo "ci-e2e: KSBOOT_CI_E2E=0: not running Scenario 1 (make e2e E2E=mdns-cluster runs it)"; exit 0 ;;
  1) echo "ci-e2e: KSBOOT_CI_E2E=1: running Scenario 1 (${elapsed} min used of ${budget})" ;;
  *)
    if (( left < estimate )); then
      echo "ci-e2e: skipping Scenario 1 (mdns-cluster): ${elapsed} min of CI's ${budget} used, ${left} min left after a ${margin}-min margin," \
        "and the scenario may take up to ${estimate} min on this machine; run it with: make e2e E2E=mdns-cluster"
      exit 0
    fi
    echo "ci-e2e: running Scenario 1 (mdns-cluster): ${left} min left, the scenario takes about ${estimate} min"
    ;;
esac
make e2e E2E=mdns-cluster
