package image

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSourceDateEpoch(t *testing.T) {
	tests := []struct {
		name    string
		value   string
		unset   bool
		want    time.Time
		wantOK  bool
		wantErr string
	}{
		{name: "unset", unset: true},
		{name: "empty", value: ""},
		{name: "zero", value: "0", want: time.Unix(0, 0).UTC(), wantOK: true},
		{name: "a date", value: "1700000000", want: testTime, wantOK: true},
		{name: "year 9999", value: "253402300799", want: time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC), wantOK: true},
		{name: "milliseconds", value: "1700000000000", wantErr: "milliseconds"},
		{name: "junk", value: "yesterday", wantErr: "SOURCE_DATE_EPOCH"},
		{name: "negative", value: "-1", wantErr: "SOURCE_DATE_EPOCH"},
		{name: "plus sign", value: "+5", wantErr: "SOURCE_DATE_EPOCH"},
		{name: "fraction", value: "1700000000.5", wantErr: "SOURCE_DATE_EPOCH"},
		{name: "spaces", value: " 1700000000", wantErr: "SOURCE_DATE_EPOCH"},
		{name: "overflow", value: "99999999999999999999", wantErr: "SOURCE_DATE_EPOCH"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(sourceDateEpochEnv, tc.value)
			if tc.unset {
				os.Unsetenv(sourceDateEpochEnv)
			}
			got, ok, err := SourceDateEpoch()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), sourceDateEpochEnv) {
					t.Errorf("error %q does not name the variable", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if ok != tc.wantOK || !got.Equal(tc.want) || (ok && got.Location() != time.UTC) {
				t.Errorf("SourceDateEpoch() = %v, %v; want %v, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestCheckFiles(t *testing.T) {
	ok := []byte("x")
	tests := []struct {
		name    string
		files   []File
		wantErr string
	}{
		{name: "no files", files: nil, wantErr: "no files"},
		{name: "empty name", files: []File{{Name: "", Data: ok}}, wantErr: "empty name"},
		{name: "empty data", files: []File{{Name: "user-data"}}, wantErr: `"user-data" is empty`},
		{name: "path", files: []File{{Name: "a/b", Data: ok}}, wantErr: "contains '/'"},
		{name: "parent", files: []File{{Name: "..", Data: ok}}, wantErr: "starts with a dot"},
		{name: "hidden", files: []File{{Name: ".ksboot", Data: ok}}, wantErr: "starts with a dot"},
		{name: "space", files: []File{{Name: "user data", Data: ok}}, wantErr: "contains ' '"},
		{name: "too long", files: []File{{Name: strings.Repeat("a", 65), Data: ok}}, wantErr: "longer than 64"},
		{name: "duplicate", files: []File{{Name: "a", Data: ok}, {Name: "a", Data: ok}}, wantErr: `"a" given twice`},
		{name: "differ in case", files: []File{{Name: "a", Data: ok}, {Name: "A", Data: ok}}, wantErr: "differ only in case"},
		{name: "not permission bits", files: []File{{Name: "a", Data: ok, Mode: fs.ModeDir | 0o755}}, wantErr: "only permission bits"},
		{name: "setuid", files: []File{{Name: "a", Data: ok, Mode: fs.ModeSetuid | 0o755}}, wantErr: "only permission bits"},
		{name: "valid", files: []File{{Name: "network-config", Data: ok}, {Name: "ksboot", Data: ok, Mode: 0o755}, {Name: "meta_data.v2", Data: ok}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := checkFiles(tc.files)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				names := []string{}
				for _, f := range got {
					names = append(names, f.Name)
					if f.Mode == 0 {
						t.Errorf("%s kept mode 0", f.Name)
					}
				}
				if !slices.IsSorted(names) {
					t.Errorf("files not sorted: %q", names)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("checkFiles error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// writers are the two image formats, run through the same behaviour
// tests.
var writers = []struct {
	name      string
	write     func(string, []File, Options) error
	errPrefix string
}{
	{name: "iso", write: WriteISO, errPrefix: "writing ISO "},
	{name: "vfat", write: WriteVFAT, errPrefix: "writing vfat image "},
}

func TestReproducible(t *testing.T) {
	files := reproFiles()
	reversed := slices.Clone(files)
	slices.Reverse(reversed)

	build := func(write func(string, []File, Options) error, files []File, mtime time.Time) []byte {
		t.Helper()
		path := filepath.Join(t.TempDir(), "seed")
		if err := write(path, files, Options{ModTime: mtime}); err != nil {
			t.Fatal(err)
		}
		return mustRead(t, path)
	}
	first := map[string][]byte{}
	for _, w := range writers {
		first[w.name] = build(w.write, files, testTime)
	}
	// go-diskfs stamps the clock (and, for FAT, $SOURCE_DATE_EPOCH) into
	// images; FAT counts in two-second steps, so wait past one.
	time.Sleep(2100 * time.Millisecond)
	t.Setenv(sourceDateEpochEnv, "86400")

	for _, w := range writers {
		t.Run(w.name, func(t *testing.T) {
			if again := build(w.write, reversed, testTime); !bytes.Equal(first[w.name], again) {
				t.Errorf("a later build, files in another order, differs in %d bytes", diffCount(first[w.name], again))
			}
			// go-diskfs takes ISO dates from stat(2) in the local zone.
			if zoned := buildElsewhere(t, w.name, "Asia/Tokyo"); !bytes.Equal(first[w.name], zoned) {
				t.Errorf("a build in another process and time zone differs in %d bytes", diffCount(first[w.name], zoned))
			}
			if frac := build(w.write, files, testTime.Add(400*time.Millisecond)); !bytes.Equal(first[w.name], frac) {
				t.Errorf("a fraction of a second in ModTime changes %d bytes", diffCount(first[w.name], frac))
			}
			if other := build(w.write, files, testTime.Add(time.Hour)); bytes.Equal(first[w.name], other) {
				t.Error("a different ModTime gives the same image; dates are not recorded")
			}
		})
	}
}

// TestAtomicWriteFailures checks that a failed write leaves the target
// directory exactly as it was: no partial image, no temporary file or
// staging directory, and an existing image untouched.
func TestAtomicWriteFailures(t *testing.T) {
	good := seedFiles(64 << 10)
	tests := []struct {
		name    string
		files   []File
		setup   func(t *testing.T, dir string) (path string)
		wantErr error // matched with errors.Is when set
		wantMsg string
	}{
		{
			name:    "empty file",
			files:   append(seedFiles(10), File{Name: "vendor-data"}),
			wantMsg: `"vendor-data" is empty`,
		},
		{
			name:    "no files",
			wantMsg: "no files",
		},
		{
			name:    "bad name",
			files:   []File{{Name: "../user-data", Data: []byte("x")}},
			wantMsg: "starts with a dot",
		},
		{
			name:  "missing target directory",
			files: good,
			setup: func(t *testing.T, dir string) string {
				return filepath.Join(dir, "missing", "seed")
			},
			wantErr: fs.ErrNotExist,
		},
		{
			// The image is built completely and only the rename fails,
			// so this proves the finished temporary file is removed.
			name:  "target is a directory",
			files: good,
			setup: func(t *testing.T, dir string) string {
				path := filepath.Join(dir, "seed")
				if err := os.MkdirAll(filepath.Join(path, "keep"), 0o700); err != nil {
					t.Fatal(err)
				}
				return path
			},
		},
		{
			name:  "unwritable target directory",
			files: good,
			setup: func(t *testing.T, dir string) string {
				if os.Geteuid() == 0 {
					t.Skip("root writes into read-only directories")
				}
				if err := os.Chmod(dir, 0o500); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = os.Chmod(dir, 0o700) })
				return filepath.Join(dir, "seed")
			},
			wantErr: fs.ErrPermission,
		},
	}
	for _, w := range writers {
		for _, tc := range tests {
			t.Run(w.name+"/"+tc.name, func(t *testing.T) {
				dir := t.TempDir()
				path := filepath.Join(dir, "seed")
				old := []byte("previous seed\n")
				if err := os.WriteFile(path+".old", old, 0o600); err != nil {
					t.Fatal(err)
				}
				if tc.setup != nil {
					path = tc.setup(t, dir)
				} else if err := os.WriteFile(path, old, 0o644); err != nil {
					t.Fatal(err)
				}
				before := dirNames(t, dir)

				err := w.write(path, tc.files, Options{ModTime: testTime})
				if err == nil {
					t.Fatal("write succeeded")
				}
				if !strings.HasPrefix(err.Error(), w.errPrefix+path+": ") {
					t.Errorf("error %q does not start with %q", err, w.errPrefix+path+": ")
				}
				if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
					t.Errorf("error %v is not %v", err, tc.wantErr)
				}
				if tc.wantMsg != "" && !strings.Contains(err.Error(), tc.wantMsg) {
					t.Errorf("error %q does not contain %q", err, tc.wantMsg)
				}
				if after := dirNames(t, dir); !slices.Equal(before, after) {
					t.Errorf("directory changed from %q to %q", before, after)
				}
				if tc.setup == nil {
					if got := mustRead(t, path); !bytes.Equal(got, old) {
						t.Errorf("existing image was changed to %d bytes", len(got))
					}
					checkMode(t, path, 0o644)
				}
			})
		}
	}
}

func TestWriteReplacesExistingImage(t *testing.T) {
	for _, w := range writers {
		t.Run(w.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "seed")
			if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := w.write(path, seedFiles(10), Options{ModTime: testTime}); err != nil {
				t.Fatal(err)
			}
			checkMode(t, path, 0o600)
			if got := dirNames(t, dir); !slices.Equal(got, []string{"seed"}) {
				t.Errorf("directory holds %q, want only seed", got)
			}
		})
	}
}
