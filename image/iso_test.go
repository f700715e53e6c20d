package image

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/diskfs/go-diskfs/filesystem"
)

func TestWriteISO(t *testing.T) {
	tests := []struct {
		name      string
		files     []File
		opts      Options
		wantLabel string
	}{
		{
			name:      "seed with agent binary",
			files:     seedFiles(3<<20 + 123),
			opts:      Options{ModTime: testTime},
			wantLabel: "cidata",
		},
		{
			name: "user-data and meta-data only",
			files: []File{
				{Name: "user-data", Data: []byte("#cloud-config\n")},
				{Name: "meta-data", Data: []byte("instance-id: a\n")},
			},
			opts:      Options{ModTime: testTime},
			wantLabel: "cidata",
		},
		{
			name:      "custom label",
			files:     seedFiles(4096),
			opts:      Options{Label: "KSBOOT_SEED", ModTime: testTime},
			wantLabel: "KSBOOT_SEED",
		},
		{
			// user-data is the last file in go-diskfs's data order, and a
			// whole-block last file used to lose the Joliet root to a
			// stray block of zeros (see zeroSkippingBackend).
			name: "last file in data order a whole block, long name",
			files: []File{
				{Name: "user-data", Data: bytes.Repeat([]byte("x"), isoBlockSize)},
				{Name: "a-rather-long-file-name-that-8.3-would-mangle.yaml", Data: []byte("k: v\n")},
			},
			opts:      Options{ModTime: testTime},
			wantLabel: "cidata",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "seed.iso")
			if err := WriteISO(path, tc.files, tc.opts); err != nil {
				t.Fatal(err)
			}
			if got := dirNames(t, dir); !slices.Equal(got, []string{"seed.iso"}) {
				t.Errorf("directory holds %q after writing, want only seed.iso", got)
			}
			checkMode(t, path, 0o600)
			checkISOSize(t, path, tc.files)
			fsys := readBack(t, path, tc.files, filesystem.TypeISO9660, tc.wantLabel)
			for _, f := range tc.files {
				st, err := fsys.Stat(f.Name)
				if err != nil {
					t.Errorf("go-diskfs Stat(%s): %v", f.Name, err)
					continue
				}
				wantMode := f.Mode
				if wantMode == 0 {
					wantMode = 0o644
				}
				if st.Mode().Perm() != wantMode {
					t.Errorf("go-diskfs reads %s with mode %v, want %v (Rock Ridge PX)", f.Name, st.Mode().Perm(), wantMode)
				}
			}
			id := blkidExport(t, path)
			if id["TYPE"] != "iso9660" || id["LABEL"] != tc.wantLabel {
				t.Errorf("blkid reports TYPE=%q LABEL=%q, want iso9660 and %q", id["TYPE"], id["LABEL"], tc.wantLabel)
			}
			checkISOWithXorriso(t, path, tc.files, tc.wantLabel, testTime)
		})
	}
}

// checkISOSize asserts that the image is exactly its recorded volume size
// and not padded beyond what the content needs.
func checkISOSize(t *testing.T, path string, files []File) {
	t.Helper()
	img := mustRead(t, path)
	if len(img)%isoBlockSize != 0 {
		t.Fatalf("image is %d bytes, not a whole number of %d-byte blocks", len(img), isoBlockSize)
	}
	pvd := img[isoFirstDescriptor*isoBlockSize:]
	if blocks := binary.LittleEndian.Uint32(pvd[80:84]); int(blocks)*isoBlockSize != len(img) {
		t.Errorf("primary volume descriptor records %d blocks, file has %d", blocks, len(img)/isoBlockSize)
	}
	content := 0
	for _, f := range files {
		content += int(roundUp(int64(len(f.Data)), isoBlockSize))
	}
	// System area, descriptors, two directory trees and four path tables
	// fit in 64 blocks for a flat seed; fixed padding would not.
	if overhead := len(img) - content; overhead > 64*isoBlockSize {
		t.Errorf("image is %d bytes for %d bytes of content: %d bytes of overhead", len(img), content, overhead)
	}
}

// checkISOWithXorriso reads the image the way libisofs does: the volume
// id, the Rock Ridge tree (names, modes, owners, dates), the Joliet tree,
// and the extracted bytes.
func checkISOWithXorriso(t *testing.T, path string, files []File, label string, mtime time.Time) {
	t.Helper()
	xorriso := tool(t, "xorriso", "xorriso")

	pvd := run(t, xorriso, "-indev", path, "-pvd_info")
	if !strings.Contains(pvd, "Volume Id    : "+label+"\n") {
		t.Errorf("xorriso -pvd_info does not show volume id %q:\n%s", label, pvd)
	}
	stamp := mtime.UTC().Format("20060102150405") + "00"
	for _, field := range []string{"Creation Time: ", "Modif. Time  : "} {
		if !strings.Contains(pvd, field+stamp) {
			t.Errorf("xorriso -pvd_info does not show %s%s:\n%s", field, stamp, pvd)
		}
	}
	if !strings.Contains(pvd, "Expir. Time  : 0000000000000000") {
		t.Errorf("volume has an expiration date:\n%s", pvd)
	}

	listing := run(t, xorriso, "-indev", path, "-toc", "-find", "/", "-exec", "lsdl")
	if !strings.Contains(listing, "ISO offers   : Rock_Ridge Joliet") {
		t.Errorf("xorriso does not find both Rock Ridge and Joliet:\n%s", listing)
	}
	day := mtime.UTC().Format("Jan _2  2006")
	// The root must be readable by everyone who mounts the seed, and
	// owned by root rather than by whoever built it.
	if want := "drwxr-xr-x    1 0        0               0 " + day + " '/'\n"; !strings.Contains(listing, want) {
		t.Errorf("xorriso listing has no root line %q:\n%s", want, listing)
	}
	for _, f := range files {
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		want := fmt.Sprintf("%v    1 0        0 %15d %s '/%s'", mode, len(f.Data), day, f.Name)
		if !strings.Contains(listing, want) {
			t.Errorf("xorriso listing has no line %q:\n%s", want, listing)
		}
	}

	joliet := run(t, xorriso, "-read_fs", "norock", "-indev", path, "-toc", "-find", "/", "-exec", "lsdl")
	if !strings.Contains(joliet, "ISO loaded   : Joliet") {
		t.Errorf("xorriso cannot load the Joliet tree:\n%s", joliet)
	}
	for _, f := range files {
		if !strings.Contains(joliet, fmt.Sprintf(" '/%s'\n", f.Name)) {
			t.Errorf("Joliet tree has no %s:\n%s", f.Name, joliet)
		}
	}

	out := t.TempDir()
	run(t, xorriso, "-osirrox", "on", "-indev", path, "-extract", "/", out)
	for _, f := range files {
		got, err := os.ReadFile(filepath.Join(out, f.Name))
		if err != nil {
			t.Errorf("xorriso did not extract %s: %v", f.Name, err)
			continue
		}
		if !bytes.Equal(got, f.Data) {
			t.Errorf("xorriso extracts %s with different content", f.Name)
		}
	}
}

func diffCount(a, b []byte) int {
	n := max(len(a), len(b)) - min(len(a), len(b))
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			n++
		}
	}
	return n
}

func TestWriteISOLabelAndTime(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{name: "label too long", opts: Options{Label: strings.Repeat("a", 33)}, wantErr: "longer than 32"},
		{name: "label not ASCII", opts: Options{Label: "cidätä"}, wantErr: "printable ASCII"},
		{name: "before 1900", opts: Options{ModTime: time.Date(1899, 1, 1, 0, 0, 0, 0, time.UTC)}, wantErr: "1900..2155"},
		{name: "after 2155", opts: Options{ModTime: time.Date(2156, 1, 1, 0, 0, 0, 0, time.UTC)}, wantErr: "1900..2155"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "seed.iso")
			err := WriteISO(path, seedFiles(10), tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("WriteISO error = %v, want one containing %q", err, tc.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "writing ISO "+path+": ") {
				t.Errorf("error %q does not name the ISO being written", err)
			}
			if got := dirNames(t, dir); len(got) != 0 {
				t.Errorf("failed write left %q behind", got)
			}
		})
	}
}

func TestWriteISOZeroModTimeIsNow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seed.iso")
	before := time.Now().UTC().Truncate(time.Second)
	if err := WriteISO(path, seedFiles(10), Options{}); err != nil {
		t.Fatal(err)
	}
	after := time.Now().UTC()
	img := mustRead(t, path)
	created, err := time.Parse("20060102150405", string(img[isoFirstDescriptor*isoBlockSize+813:][:14]))
	if err != nil {
		t.Fatal(err)
	}
	if created.Before(before) || created.After(after) {
		t.Errorf("volume creation time %v is not between %v and %v", created, before, after)
	}
}

// BenchmarkWriteISO packs a seed with a 60 MB agent binary, the size the
// real binary has with client-go linked in.
func BenchmarkWriteISO(b *testing.B) {
	files := seedFiles(60 << 20)
	var total int64
	for _, f := range files {
		total += int64(len(f.Data))
	}
	path := filepath.Join(b.TempDir(), "seed.iso")
	b.SetBytes(total)
	b.ReportAllocs()
	for b.Loop() {
		if err := WriteISO(path, files, Options{ModTime: testTime}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestWriteISOIsoinfo reads the image with genisoimage's isoinfo, a reader
// independent of libisofs, which does its own Rock Ridge and Joliet parsing.
func TestWriteISOIsoinfo(t *testing.T) {
	isoinfo := tool(t, "isoinfo", "genisoimage")
	files := seedFiles(5000)
	path := filepath.Join(t.TempDir(), "seed.iso")
	if err := WriteISO(path, files, Options{ModTime: testTime}); err != nil {
		t.Fatal(err)
	}
	info := run(t, isoinfo, "-d", "-i", path)
	for _, want := range []string{"Volume id: cidata\n", "Joliet with UCS level 3 found", "Rock Ridge signatures version 1 found"} {
		if !strings.Contains(info, want) {
			t.Errorf("isoinfo -d lacks %q:\n%s", want, info)
		}
	}
	for _, ext := range []string{"-R", "-J"} {
		listing := run(t, isoinfo, ext, "-l", "-i", path)
		for _, f := range files {
			if !strings.Contains(listing, "]  "+f.Name+" \n") {
				t.Errorf("isoinfo %s -l does not list %s:\n%s", ext, f.Name, listing)
			}
		}
	}
}
