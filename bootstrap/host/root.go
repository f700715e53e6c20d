package host

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/ksboot/ksboot/internal/atomicfile"
)

// Root resolves node paths ("/etc/hosts") under a directory ("/" on a node, a temp dir in tests
// and dry runs) and writes files atomically there.
type Root string

// Path returns the host path of a node path.
func (r Root) Path(p string) string {
	if r == "" || r == "/" {
		return filepath.Clean("/" + p)
	}
	return filepath.Join(string(r), p)
}

// ReadFile reads a node path.
func (r Root) ReadFile(p string) ([]byte, error) { return os.ReadFile(r.Path(p)) }

// Exists reports whether a node path exists.
func (r Root) Exists(p string) bool {
	_, err := os.Stat(r.Path(p))
	return err == nil
}

// WriteFile writes data to a node path through a synced temporary file and a rename, so that
// neither a reader nor a crash ever sees half a file. It reports whether the content changed:
// phases are idempotent and say so. Parent directories are created 0755 unless they exist.
func (r Root) WriteFile(p string, data []byte, mode os.FileMode) (changed bool, err error) {
	full := r.Path(p)
	if old, err := os.ReadFile(full); err == nil && bytes.Equal(old, data) {
		if st, err := os.Stat(full); err == nil && st.Mode().Perm() == mode.Perm() {
			return false, nil
		}
	}
	if err := atomicfile.Write(full, data, mode, 0o755); err != nil {
		return false, err
	}
	return true, nil
}

// MkdirAll creates a node directory.
func (r Root) MkdirAll(p string, mode os.FileMode) error {
	if err := os.MkdirAll(r.Path(p), mode); err != nil {
		return fmt.Errorf("creating %s: %w", p, err)
	}
	return nil
}

// Remove deletes a node path; a missing path is not an error.
func (r Root) Remove(p string) error {
	if err := os.Remove(r.Path(p)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", p, err)
	}
	return nil
}

// ManagedBlock replaces (or appends) the block between "# BEGIN ksboot" and "# END ksboot" in
// text, leaving everything else as the user wrote it.
func ManagedBlock(text, block string) string {
	const begin, end = "# BEGIN ksboot managed block", "# END ksboot managed block"
	managed := begin + "\n" + strings.TrimRight(block, "\n") + "\n" + end + "\n"
	if i := strings.Index(text, begin); i >= 0 {
		if j := strings.Index(text[i:], end); j >= 0 {
			rest := strings.TrimPrefix(text[i+j+len(end):], "\n")
			return text[:i] + managed + rest
		}
	}
	if text != "" && !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	return text + managed
}
