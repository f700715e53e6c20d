// Package ksbootbin builds the real ksboot binary for black-box tests (the one that goes into
// seeds and runs in guests). Only tests import it.
package ksbootbin

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// RepoRoot is the module root, found from this file's location.
func RepoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the ksbootbin package")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Build builds ./cmd/ksboot statically with the given version string into a temporary directory
// and returns its path and hex SHA-256.
func Build(t testing.TB, version string) (path, sum string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "ksboot")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+version, "-o", path, "./cmd/ksboot")
	cmd.Dir = RepoRoot(t)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building ksboot: %v\n%s", err, out)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(data)
	return path, hex.EncodeToString(s[:])
}
