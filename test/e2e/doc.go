// Package e2e is ksboot's black-box suite: real qemu guests on a private segment boot from
// seeds made by the real `ksboot build-seed`, install from a bundle made by `ksboot bundle
// --from-dir`, and must form a working Kubernetes cluster with nobody logging in. Scenarios
// are data (scenarios/*.yaml, see Scenario); the suite reads the cluster's API and `ksboot
// watch` from inside the segment's namespace, times every node's phases from power-on, and
// keeps each guest's serial log and status.json.
//
// The scenarios take tens of minutes under TCG, so they run only when asked:
//
//	KSBOOT_E2E=mdns-cluster go test -v -timeout 3h -run TestE2E ./test/e2e   # one scenario
//	make e2e                                                                # all of them
//
// Artifacts go to $KSBOOT_E2E_ARTIFACTS (default: a ksboot-e2e directory under the system's
// temporary directory), one directory per run.
package e2e
