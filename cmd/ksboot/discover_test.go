package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ksboot/ksboot/cluster"
	"github.com/ksboot/ksboot/test/testpki"
)

func TestDiscoverStatic(t *testing.T) {
	dir := t.TempDir()
	ours, err := loadSecrets(filepath.Join(dir, "demo-secrets"))
	if err != nil {
		t.Fatal(err)
	}
	srv := testpki.APIServer(t, ours)
	host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	file := filepath.Join(dir, "demo.yaml")
	body := "apiVersion: ksboot.dev/v1alpha1\nkind: Cluster\nmetadata: {name: demo}\nspec:\n" +
		"  hosts: [{name: cp1, address: " + host + "/8, interface: lo}]\n" +
		"  roleGroups: {etcd: [cp1], control-plane: [cp1]}\n" +
		"  controlPlaneEndpoint: {address: " + host + ", port: " + port + "}\n"
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := ksboot(t, "discover", "-f", file, "--timeout", "10s")
	if code != 0 || strings.TrimSpace(out) != srv.Listener.Addr().String() {
		t.Fatalf("exit %d, out %q, err %s", code, out, errOut)
	}
	// Another cluster's secrets: the same server no longer verifies.
	other := filepath.Join(dir, "other-secrets")
	if _, _, err := cluster.LoadOrCreateSecrets(other); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = ksboot(t, "discover", "-f", file, "--secrets", other, "--timeout", "3s")
	if code != exitFailure || !strings.Contains(errOut, "no verified control plane") {
		t.Fatalf("foreign CA: exit %d, %s", code, errOut)
	}
	t.Logf("foreign CA message: %s", errOut)
}

func loadSecrets(dir string) (*cluster.Secrets, error) {
	s, _, err := cluster.LoadOrCreateSecrets(dir)
	return s, err
}
