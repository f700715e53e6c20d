package image

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/diskfs/go-diskfs/backend"
	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/fat12"
	"github.com/diskfs/go-diskfs/filesystem/fat16"
	"github.com/diskfs/go-diskfs/filesystem/fat32"
)

// defaultVFATLabel is what cloud-init's NoCloud data source looks for on a
// FAT volume (it accepts either case; FAT labels are upper case by custom).
const defaultVFATLabel = "CIDATA"

const (
	mib = 1 << 20
	// FAT12 up to 8 MiB and FAT16 up to 1 GiB keep go-diskfs's cluster
	// size tables well inside the cluster counts each FAT type allows
	// (its FAT12 table overflows just below 8 MiB and at 16 MiB, its FAT16
	// table at exactly 2 GiB). Sizes are whole MiB, so no image hits an
	// edge. Beyond 1 GiB FAT32 with 4 KiB clusters is the natural choice.
	maxFAT12Size = 8 * mib
	// FAT32 needs at least 65525 clusters; with go-diskfs's 512-byte
	// clusters for small volumes that takes a little over 32 MiB.
	minFAT32Size = 64 * mib
	// Growing the image should converge at once; the bound only turns a
	// sizing bug into an error instead of a loop.
	maxSizingRounds = 16
)

// maxFAT16Size is a variable only so that tests can exercise the FAT32
// path without building a gigabyte image.
var maxFAT16Size int64 = 1024 * mib

// FAT stores dates from 1980 to 2107 only.
var (
	fatEpoch = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)
	fatLast  = time.Date(2107, 12, 31, 23, 59, 58, 0, time.UTC)
)

// WriteVFAT writes files to path as a FAT image labelled opts.Label
// (default "CIDATA"), choosing FAT12, FAT16 or FAT32 by the size the files
// need. Names are stored as long file names, so they read back unchanged.
func WriteVFAT(path string, files []File, opts Options) error {
	if err := writeVFAT(path, files, opts); err != nil {
		return fmt.Errorf("writing vfat image %s: %w", path, err)
	}
	return nil
}

func writeVFAT(path string, files []File, opts Options) error {
	files, err := checkFiles(files)
	if err != nil {
		return err
	}
	label := opts.Label
	if label == "" {
		label = defaultVFATLabel
	}
	if err := checkFATLabel(label); err != nil {
		return err
	}
	// Times before 1980 (SOURCE_DATE_EPOCH=0 is common) cannot be stored;
	// clamping is what mtools and zip do and keeps such builds working.
	mtime := modTime(opts.ModTime)
	if mtime.Before(fatEpoch) {
		mtime = fatEpoch
	}
	if mtime.After(fatLast) {
		return fmt.Errorf("modification time %s is after 2107, the last year FAT can record", mtime.Format(time.RFC3339))
	}
	return writeAtomic(path, func(out *os.File) error {
		return buildVFAT(out, files, label, mtime)
	})
}

func buildVFAT(out *os.File, files []File, label string, mtime time.Time) error {
	size := estimateFATSize(files)
	b := file.New(out, false)
	var fsys *fat12.FileSystem
	for round := 0; ; round++ {
		if round == maxSizingRounds {
			return fmt.Errorf("could not find a FAT layout for %d files after %d attempts", len(files), round)
		}
		// Start every attempt from a sparse, all-zero file of the full
		// size: readers such as mtools check the file against the sector
		// count in the boot sector.
		if size > maxFAT16Size {
			size = max(size, minFAT32Size)
		}
		if err := out.Truncate(0); err != nil {
			return err
		}
		if err := out.Truncate(size); err != nil {
			return err
		}
		var err error
		fsys, err = createFAT(b, size, label)
		if err != nil {
			return fmt.Errorf("creating FAT file system of %d bytes: %w", size, err)
		}
		fits, err := fatTableFits(out)
		if err != nil {
			return err
		}
		if !fits {
			size += mib
			continue
		}
		missing := missingClusters(fsys, size, files)
		if missing <= 0 {
			break
		}
		size += roundUp(int64(missing)*int64(fsys.BytesPerCluster()), mib)
	}
	for _, f := range files {
		if err := addFATFile(fsys, f); err != nil {
			return err
		}
	}
	return normalizeFAT(out, mtime, fatSerial(files, label, mtime))
}

// createFAT returns the *fat12.FileSystem that go-diskfs's FAT16 and
// FAT32 types embed; it carries all file operations, with the FAT32 boot
// sector and FSInfo handling wired in through hooks.
func createFAT(b backend.Storage, size int64, label string) (*fat12.FileSystem, error) {
	// reproducible=true stops go-diskfs from deriving the volume serial
	// from time.Now(); it leaves it zero and normalizeFAT fills it in.
	switch {
	case size <= maxFAT12Size:
		return fat12.Create(b, size, 0, 512, label, true)
	case size <= maxFAT16Size:
		fsys, err := fat16.Create(b, size, 0, 512, label, true)
		if err != nil {
			return nil, err
		}
		return fsys.FileSystem, nil
	default:
		fsys, err := fat32.Create(b, size, 0, 512, label, true)
		if err != nil {
			return nil, err
		}
		return fsys.FileSystem, nil
	}
}

// estimateFATSize guesses an image size that usually fits on the first
// try: every file rounded up to the largest cluster go-diskfs uses, plus
// room for boot sector, FATs and root directory, in whole MiB.
func estimateFATSize(files []File) int64 {
	const maxCluster = 32 << 10
	var data int64
	for _, f := range files {
		data += roundUp(int64(len(f.Data)), maxCluster)
	}
	// FAT32 tables take about 1/512 of the volume for 4 KiB clusters;
	// FAT12 and FAT16 need far less.
	return roundUp(data+256*1024+data/256, mib)
}

// fatTableFits reports whether the FAT written by go-diskfs has an entry
// for every cluster of the data area. Its FAT32 sizing formula leaves out
// the two reserved entries, so for some volume sizes the last clusters have
// no entry and mtools refuses the image ("Filesystem has N clusters but
// only space for M FAT entries"). Such a size is skipped.
func fatTableFits(f *os.File) (bool, error) {
	bs := make([]byte, 512)
	if _, err := f.ReadAt(bs, 0); err != nil {
		return false, fmt.Errorf("reading boot sector: %w", err)
	}
	g, err := parseFATGeometry(bs)
	if err != nil {
		return false, err
	}
	var entries int64
	switch g.kind {
	case "FAT12":
		entries = g.fatSize * g.bytesPerSector * 2 / 3
	case "FAT16":
		entries = g.fatSize * g.bytesPerSector / 2
	default:
		entries = g.fatSize * g.bytesPerSector / 4
	}
	return entries >= g.clusters+2, nil
}

// missingClusters reports how many more clusters the files need than the
// freshly created file system has. go-diskfs allocates clusters in order
// and would happily hand out cluster numbers past the end of the data area
// when its FAT is larger than the volume, so this must be checked first.
func missingClusters(fsys *fat12.FileSystem, size int64, files []File) int64 {
	bpc := int64(fsys.BytesPerCluster())
	avail := (size - int64(fsys.DataStart())) / bpc
	// Cluster 2 is taken: the root directory on FAT32, reserved by
	// go-diskfs on FAT12/16.
	need := int64(1)
	dirEntries := int64(1) // volume label
	for _, f := range files {
		need += (int64(len(f.Data)) + bpc - 1) / bpc
		dirEntries += 1 + int64(len(f.Name)+12)/13 // 8.3 entry + long name slots
	}
	// On FAT32 the root directory grows as a cluster chain; on FAT12/16 it
	// is a fixed region and this only overestimates by at most a cluster.
	need += (dirEntries*32+bpc-1)/bpc - 1
	return need - avail
}

func addFATFile(fsys *fat12.FileSystem, f File) error {
	w, err := fsys.OpenFile("/"+f.Name, os.O_CREATE|os.O_RDWR)
	if err != nil {
		return fmt.Errorf("adding %s: %w", f.Name, err)
	}
	if _, err := w.Write(f.Data); err != nil {
		_ = w.Close()
		return fmt.Errorf("adding %s: %w", f.Name, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("adding %s: %w", f.Name, err)
	}
	return nil
}

// checkFATLabel accepts what mkfs.fat accepts without complaint: up to 11
// upper-case letters, digits, spaces and the punctuation allowed in short
// names. Lower case is refused instead of silently changed, because Linux
// and Windows would disagree about how to show it.
func checkFATLabel(label string) error {
	if len(label) > 11 {
		return fmt.Errorf("volume label %q is longer than 11 characters", label)
	}
	if label[0] == ' ' {
		return fmt.Errorf("volume label %q starts with a space", label)
	}
	for _, c := range label {
		switch {
		case c >= 'A' && c <= 'Z', c >= '0' && c <= '9', strings.ContainsRune(" !#$%&'()-@^_`{}~", c):
		case c >= 'a' && c <= 'z':
			return fmt.Errorf("volume label %q has lower case letters; FAT labels are upper case, use %q", label, strings.ToUpper(label))
		default:
			return fmt.Errorf("volume label %q contains %q, which FAT labels cannot hold", label, c)
		}
	}
	return nil
}

// fatSerial derives the volume serial number (the UUID blkid reports) from
// the content. mkfs.fat and go-diskfs derive it from the clock; a content
// hash is just as unique between different seeds but stable between
// rebuilds of the same one.
func fatSerial(files []File, label string, mtime time.Time) uint32 {
	h := sha256.New()
	var n [8]byte
	write := func(b []byte) {
		binary.LittleEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	write([]byte(label))
	write([]byte(mtime.Format(time.RFC3339)))
	for _, f := range files {
		write([]byte(f.Name))
		write([]byte{byte(f.Mode >> 8), byte(f.Mode)})
		write(f.Data)
	}
	return binary.LittleEndian.Uint32(h.Sum(nil))
}

// normalizeFAT sets what go-diskfs v1.9 takes from the environment instead
// of from the caller: every directory entry (including the volume label
// entry, which has no Chtimes) is stamped with time.Now() or with
// $SOURCE_DATE_EPOCH read behind the caller's back, and the serial number
// is either clock-derived or, in reproducible mode, zero. It rewrites the
// serial in the boot sector (and its FAT32 backup) and every date in the
// root directory, which is the only directory this package creates.
func normalizeFAT(f *os.File, mtime time.Time, serial uint32) error {
	bs := make([]byte, 512)
	if _, err := f.ReadAt(bs, 0); err != nil {
		return fmt.Errorf("reading boot sector: %w", err)
	}
	g, err := parseFATGeometry(bs)
	if err != nil {
		return err
	}
	if err := setFATSerial(f, 0, g, serial); err != nil {
		return err
	}
	if g.kind == "FAT32" && g.backupBoot != 0 && g.backupBoot < g.reserved {
		if err := setFATSerial(f, g.backupBoot*g.bytesPerSector, g, serial); err != nil {
			return err
		}
	}

	runs, err := g.rootDirRuns(f)
	if err != nil {
		return err
	}
	date, clock, tenths := fatTimestamp(mtime)
	clusterTwoUsed := false
	for _, run := range runs {
		dir := make([]byte, run.length)
		if _, err := f.ReadAt(dir, run.offset); err != nil {
			return fmt.Errorf("reading root directory: %w", err)
		}
		for e := 0; e+32 <= len(dir); e += 32 {
			ent := dir[e : e+32]
			if ent[0] == 0x00 {
				break // end of directory
			}
			if ent[0] == 0xE5 || ent[11]&0x3F == 0x0F {
				continue // deleted entry or long name slot
			}
			first := uint32(binary.LittleEndian.Uint16(ent[20:]))<<16 | uint32(binary.LittleEndian.Uint16(ent[26:]))
			if ent[11]&0x08 == 0 && first == 2 {
				clusterTwoUsed = true
			}
			ent[13] = tenths
			binary.LittleEndian.PutUint16(ent[14:], clock) // created
			binary.LittleEndian.PutUint16(ent[16:], date)
			binary.LittleEndian.PutUint16(ent[18:], date)  // accessed
			binary.LittleEndian.PutUint16(ent[22:], clock) // modified
			binary.LittleEndian.PutUint16(ent[24:], date)
		}
		if _, err := f.WriteAt(dir, run.offset); err != nil {
			return err
		}
	}
	if g.kind != "FAT32" && !clusterTwoUsed {
		return freeClusterTwo(f, g)
	}
	return nil
}

func setFATSerial(f *os.File, at int64, g fatGeometry, serial uint32) error {
	// The serial sits in the extended BIOS parameter block, which starts
	// later on FAT32.
	off := int64(39)
	if g.kind == "FAT32" {
		off = 67
	}
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], serial)
	_, err := f.WriteAt(b[:], at+off)
	return err
}

// fatGeometry is the layout read back from a boot sector.
type fatGeometry struct {
	kind              string // "FAT12", "FAT16" or "FAT32"
	bytesPerSector    int64
	sectorsPerCluster int64
	reserved          int64 // sectors before the first FAT
	fats              int64
	fatSize           int64 // sectors per FAT
	rootEntries       int64 // fixed root directory entries; 0 on FAT32
	clusters          int64 // clusters in the data area
	rootCluster       int64 // first root directory cluster on FAT32
	backupBoot        int64 // backup boot sector on FAT32, 0 if none
}

// parseFATGeometry reads a boot sector and decides the FAT type the way
// the Linux driver does: FAT32 when the 16-bit FAT size is zero, otherwise
// FAT12 below 4085 clusters and FAT16 from there on.
func parseFATGeometry(bs []byte) (fatGeometry, error) {
	if len(bs) < 512 || bs[510] != 0x55 || bs[511] != 0xAA {
		return fatGeometry{}, errors.New("boot sector has no 55AA signature")
	}
	le16 := func(o int) int64 { return int64(binary.LittleEndian.Uint16(bs[o:])) }
	le32 := func(o int) int64 { return int64(binary.LittleEndian.Uint32(bs[o:])) }
	g := fatGeometry{
		bytesPerSector:    le16(11),
		sectorsPerCluster: int64(bs[13]),
		reserved:          le16(14),
		fats:              int64(bs[16]),
		rootEntries:       le16(17),
		fatSize:           le16(22),
	}
	if g.bytesPerSector == 0 || g.sectorsPerCluster == 0 {
		return fatGeometry{}, errors.New("boot sector has a zero sector or cluster size")
	}
	total := le16(19)
	if total == 0 {
		total = le32(32)
	}
	if g.fatSize == 0 {
		g.kind = "FAT32"
		g.fatSize = le32(36)
		g.rootCluster = le32(44)
		g.backupBoot = le16(50)
	}
	rootSectors := (g.rootEntries*32 + g.bytesPerSector - 1) / g.bytesPerSector
	data := total - g.reserved - g.fats*g.fatSize - rootSectors
	if data <= 0 {
		return fatGeometry{}, errors.New("boot sector describes no data area")
	}
	g.clusters = data / g.sectorsPerCluster
	switch {
	case g.kind != "":
	case g.clusters < 4085:
		g.kind = "FAT12"
	default:
		g.kind = "FAT16"
	}
	return g, nil
}

type byteRun struct{ offset, length int64 }

// rootDirRuns locates the root directory: a fixed region on FAT12/16, a
// cluster chain followed through the first FAT on FAT32.
func (g fatGeometry) rootDirRuns(f *os.File) ([]byteRun, error) {
	fatStart := g.reserved * g.bytesPerSector
	if g.kind != "FAT32" {
		return []byteRun{{fatStart + g.fats*g.fatSize*g.bytesPerSector, g.rootEntries * 32}}, nil
	}
	dataStart := fatStart + g.fats*g.fatSize*g.bytesPerSector
	clusterBytes := g.sectorsPerCluster * g.bytesPerSector
	var runs []byteRun
	var next [4]byte
	for c := g.rootCluster; c < 0x0FFFFFF8; {
		if c < 2 || c >= g.clusters+2 || int64(len(runs)) > g.clusters {
			return nil, fmt.Errorf("root directory cluster chain is broken at cluster %d", c)
		}
		runs = append(runs, byteRun{dataStart + (c-2)*clusterBytes, clusterBytes})
		if _, err := f.ReadAt(next[:], fatStart+c*4); err != nil {
			return nil, fmt.Errorf("reading FAT: %w", err)
		}
		c = int64(binary.LittleEndian.Uint32(next[:]) & 0x0FFFFFFF)
	}
	return runs, nil
}

// freeClusterTwo undoes a go-diskfs quirk: on FAT12 and FAT16 it marks
// cluster 2 as an end of chain although the root directory lives in its
// own region and nothing uses the cluster. fsck.fat reports that as a lost
// cluster, so the entry is cleared in every FAT copy.
func freeClusterTwo(f *os.File, g fatGeometry) error {
	for i := range g.fats {
		at := (g.reserved + i*g.fatSize) * g.bytesPerSector
		var e [2]byte
		if g.kind == "FAT12" {
			// Cluster 2 is the low 12 bits of bytes 3-4; the high nibble
			// of byte 4 belongs to cluster 3.
			if _, err := f.ReadAt(e[:], at+3); err != nil {
				return fmt.Errorf("reading FAT: %w", err)
			}
			e[0], e[1] = 0, e[1]&0xF0
			if _, err := f.WriteAt(e[:], at+3); err != nil {
				return err
			}
			continue
		}
		if _, err := f.WriteAt(e[:], at+4); err != nil {
			return err
		}
	}
	return nil
}

// fatTimestamp encodes t in FAT's directory entry format. The time field
// counts two-second steps; the creation "tenths" byte (0-199, in units of
// 10 ms) carries the odd second.
func fatTimestamp(t time.Time) (date, clock uint16, tenths byte) {
	date = uint16((t.Year()-1980)<<9 | int(t.Month())<<5 | t.Day())
	clock = uint16(t.Hour()<<11 | t.Minute()<<5 | t.Second()/2)
	tenths = byte(t.Second()%2) * 100
	return date, clock, tenths
}

func roundUp(n, to int64) int64 {
	return (n + to - 1) / to * to
}
