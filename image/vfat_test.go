package image

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/diskfs/go-diskfs/filesystem"
)

func TestWriteVFAT(t *testing.T) {
	tests := []struct {
		name      string
		files     []File
		opts      Options
		forceFAT2 bool // lower the FAT16 limit so a small image is FAT32
		wantType  filesystem.Type
		wantLabel string
		maxSize   int64
	}{
		{
			name:      "small seed is FAT12",
			files:     seedFiles(5000),
			opts:      Options{ModTime: testTime},
			wantType:  filesystem.TypeFat12,
			wantLabel: "CIDATA",
			maxSize:   1 * mib,
		},
		{
			name:      "seed with a 20 MB agent is FAT16",
			files:     seedFiles(20 << 20),
			opts:      Options{ModTime: testTime},
			wantType:  filesystem.TypeFat16,
			wantLabel: "CIDATA",
			maxSize:   22 * mib,
		},
		{
			name:      "custom label",
			files:     seedFiles(100),
			opts:      Options{Label: "SEED-01", ModTime: testTime},
			wantType:  filesystem.TypeFat12,
			wantLabel: "SEED-01",
			maxSize:   1 * mib,
		},
		{
			name:      "FAT32 beyond the FAT16 limit",
			files:     seedFiles(3 << 20),
			opts:      Options{ModTime: testTime},
			forceFAT2: true,
			wantType:  filesystem.TypeFat32,
			wantLabel: "CIDATA",
			maxSize:   minFAT32Size + 2*mib,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.forceFAT2 {
				saved := maxFAT16Size
				maxFAT16Size = 0
				t.Cleanup(func() { maxFAT16Size = saved })
			}
			dir := t.TempDir()
			path := filepath.Join(dir, "seed.img")
			if err := WriteVFAT(path, tc.files, tc.opts); err != nil {
				t.Fatal(err)
			}
			if got := dirNames(t, dir); !slices.Equal(got, []string{"seed.img"}) {
				t.Errorf("directory holds %q after writing, want only seed.img", got)
			}
			checkMode(t, path, 0o600)
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if st.Size() > tc.maxSize {
				t.Errorf("image is %d bytes, want at most %d", st.Size(), tc.maxSize)
			}
			readBack(t, path, tc.files, tc.wantType, tc.wantLabel)
			checkVFATWithTools(t, path, tc.files, tc.wantLabel, tc.opts.ModTime)
		})
	}
}

// checkVFATWithTools reads the image with blkid, mtools and fsck.fat.
func checkVFATWithTools(t *testing.T, path string, files []File, label string, mtime time.Time) {
	t.Helper()
	id := blkidExport(t, path)
	if id["TYPE"] != "vfat" || id["LABEL"] != label {
		t.Errorf("blkid reports TYPE=%q LABEL=%q, want vfat and %q", id["TYPE"], id["LABEL"], label)
	}

	mdir := tool(t, "mdir", "mtools")
	listing := run(t, mdir, "-i", path, "::")
	if !strings.Contains(listing, "Volume in drive : is "+label) {
		t.Errorf("mdir does not show label %s:\n%s", label, listing)
	}
	stamp := mtime.UTC().Format("2006-01-02  15:04")
	for _, f := range files {
		found := false
		for line := range strings.Lines(listing) {
			fields := strings.Fields(line)
			// SHORT SIZE DATE TIME LONGNAME
			if len(fields) == 5 && fields[4] == f.Name && fields[1] == fmt.Sprint(len(f.Data)) && strings.Contains(line, stamp) {
				found = true
			}
		}
		if !found {
			t.Errorf("mdir shows no %s of %d bytes dated %s:\n%s", f.Name, len(f.Data), stamp, listing)
		}
	}

	mtype := tool(t, "mtype", "mtools")
	mcopy := tool(t, "mcopy", "mtools")
	out := t.TempDir()
	for _, f := range files {
		if len(f.Data) < 4096 {
			got, err := exec.Command(mtype, "-i", path, "::"+f.Name).Output()
			if err != nil {
				t.Errorf("mtype %s: %v", f.Name, err)
			} else if !bytes.Equal(got, f.Data) {
				t.Errorf("mtype %s prints %q, want %q", f.Name, got, f.Data)
			}
			continue
		}
		dst := filepath.Join(out, f.Name)
		run(t, mcopy, "-n", "-i", path, "::"+f.Name, dst)
		if !bytes.Equal(mustRead(t, dst), f.Data) {
			t.Errorf("mcopy extracts %s with different content", f.Name)
		}
	}

	// fsck.fat -n exits non-zero on any inconsistency, such as the lost
	// cluster go-diskfs leaves on FAT12/16 (see freeClusterTwo).
	run(t, tool(t, "fsck.fat", "dosfstools"), "-n", path)
}

func TestWriteVFATOptions(t *testing.T) {
	tests := []struct {
		name     string
		opts     Options
		wantErr  string
		wantDate string // as mdir prints it
	}{
		{name: "lower case label", opts: Options{Label: "cidata"}, wantErr: `use "CIDATA"`},
		{name: "label too long", opts: Options{Label: "ABCDEFGHIJKL"}, wantErr: "longer than 11"},
		{name: "label with a dot", opts: Options{Label: "SEED.1"}, wantErr: "cannot hold"},
		{name: "label starting with a space", opts: Options{Label: " SEED"}, wantErr: "starts with a space"},
		{name: "after 2107", opts: Options{ModTime: time.Date(2108, 1, 1, 0, 0, 0, 0, time.UTC)}, wantErr: "after 2107"},
		{name: "epoch 0 is clamped to 1980", opts: Options{ModTime: time.Unix(0, 0)}, wantDate: "1980-01-01   0:00"},
		{name: "odd second", opts: Options{ModTime: time.Date(2024, 2, 29, 13, 7, 9, 0, time.UTC)}, wantDate: "2024-02-29  13:07"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "seed.img")
			err := WriteVFAT(path, seedFiles(10), tc.opts)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("WriteVFAT error = %v, want one containing %q", err, tc.wantErr)
				}
				if !strings.HasPrefix(err.Error(), "writing vfat image "+path+": ") {
					t.Errorf("error %q does not name the image being written", err)
				}
				if got := dirNames(t, dir); len(got) != 0 {
					t.Errorf("failed write left %q behind", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			listing := run(t, tool(t, "mdir", "mtools"), "-i", path, "::")
			if n := strings.Count(listing, tc.wantDate); n != 4 {
				t.Errorf("mdir shows %d files dated %q, want 4:\n%s", n, tc.wantDate, listing)
			}
		})
	}
}

func TestFATTimestamp(t *testing.T) {
	date, clock, tenths := fatTimestamp(time.Date(2024, 2, 29, 13, 7, 9, 0, time.UTC))
	if want := uint16(44<<9 | 2<<5 | 29); date != want {
		t.Errorf("date = %#x, want %#x", date, want)
	}
	if want := uint16(13<<11 | 7<<5 | 4); clock != want {
		t.Errorf("time = %#x, want %#x", clock, want)
	}
	if tenths != 100 {
		t.Errorf("tenths = %d, want 100 for an odd second", tenths)
	}
}
