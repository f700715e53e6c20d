package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a", "b", "f")
	if err := Write(p, []byte("one"), 0o600, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := Write(p, []byte("two"), 0o640, 0o700); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(p)
	st, _ := os.Stat(p)
	dst, _ := os.Stat(filepath.Dir(p))
	if string(data) != "two" || st.Mode().Perm() != 0o640 || dst.Mode().Perm() != 0o700 {
		t.Errorf("content %q mode %o dir %o", data, st.Mode().Perm(), dst.Mode().Perm())
	}
	entries, _ := os.ReadDir(filepath.Dir(p))
	if len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
	// A failed write leaves the old file and no temporary file.
	if err := Write(filepath.Join(p, "under-a-file"), []byte("x"), 0o600, 0o700); err == nil {
		t.Error("writing below a regular file succeeded")
	}
	entries, _ = os.ReadDir(filepath.Dir(p))
	if len(entries) != 1 {
		t.Errorf("temporary files left after a failure: %v", entries)
	}
}
