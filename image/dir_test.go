package image

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestWriteDir(t *testing.T) {
	tests := []struct {
		name     string
		existing map[string]string // files present before the write
		files    []File
		want     []string // directory listing afterwards
	}{
		{
			name:  "new nested directory",
			files: seedFiles(100 << 10),
			want:  []string{"ksboot", "meta-data", "network-config", "user-data"},
		},
		{
			name:     "replaces existing files and keeps others",
			existing: map[string]string{"user-data": "old", "vendor-data": "keep"},
			files:    seedFiles(10),
			want:     []string{"ksboot", "meta-data", "network-config", "user-data", "vendor-data"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "seeds", "node1")
			if tc.existing != nil {
				if err := os.MkdirAll(dir, 0o700); err != nil {
					t.Fatal(err)
				}
				for name, content := range tc.existing {
					if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := WriteDir(dir, tc.files); err != nil {
				t.Fatal(err)
			}
			checkMode(t, dir, 0o700)
			if got := dirNames(t, dir); !slices.Equal(got, tc.want) {
				t.Errorf("directory holds %q, want %q", got, tc.want)
			}
			for _, f := range tc.files {
				path := filepath.Join(dir, f.Name)
				// 0600 even for the 0755 binary: the tree is served, not
				// executed, and it holds secrets.
				checkMode(t, path, 0o600)
				if !bytes.Equal(mustRead(t, path), f.Data) {
					t.Errorf("%s has different content", f.Name)
				}
			}
		})
	}
}

func TestWriteDirFailures(t *testing.T) {
	tests := []struct {
		name    string
		files   []File
		setup   func(t *testing.T, dir string)
		wantMsg string
		// wantDir reports whether dir should exist afterwards.
		wantDir bool
	}{
		{
			name:    "empty file writes nothing, not even the directory",
			files:   append(seedFiles(10), File{Name: "vendor-data"}),
			wantMsg: `"vendor-data" is empty`,
		},
		{
			name:  "parent is a file",
			files: seedFiles(10),
			setup: func(t *testing.T, dir string) {
				if err := os.WriteFile(filepath.Dir(dir), []byte("x"), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			wantMsg: "not a directory",
		},
		{
			// Every file is staged before the first rename; the rename
			// onto a directory fails and no temporary file stays.
			name:  "a target name is a directory",
			files: seedFiles(10),
			setup: func(t *testing.T, dir string) {
				if err := os.MkdirAll(filepath.Join(dir, "user-data", "x"), 0o700); err != nil {
					t.Fatal(err)
				}
			},
			wantMsg: "writing user-data",
			wantDir: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "seeds", "node1")
			if tc.setup != nil {
				if err := os.MkdirAll(filepath.Dir(filepath.Dir(dir)), 0o700); err != nil {
					t.Fatal(err)
				}
				tc.setup(t, dir)
			}
			err := WriteDir(dir, tc.files)
			if err == nil {
				t.Fatal("WriteDir succeeded")
			}
			if !strings.HasPrefix(err.Error(), "writing seed files to "+dir+": ") {
				t.Errorf("error %q does not name the directory", err)
			}
			if tc.wantMsg != "" && !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("error %q does not contain %q", err, tc.wantMsg)
			}
			_, statErr := os.Stat(dir)
			if exists := statErr == nil; exists != tc.wantDir {
				t.Fatalf("directory exists = %v, want %v", exists, tc.wantDir)
			}
			if tc.wantDir {
				for _, name := range dirNames(t, dir) {
					if strings.HasPrefix(name, ".") {
						t.Errorf("temporary file %s left behind", name)
					}
				}
			}
		})
	}
}
