package image

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"time"

	"github.com/diskfs/go-diskfs/backend"
	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
)

// defaultISOLabel is the volume identifier cloud-init's NoCloud data source
// looks for. It is lower case on purpose: that is what genisoimage -V cidata
// writes and what every cloud-init example uses, even though strict ECMA-119
// d-characters would be upper case.
const defaultISOLabel = "cidata"

const (
	isoBlockSize = 2048
	// ECMA-119 puts the volume descriptor set at logical block 16.
	isoFirstDescriptor = 16
	// Real images have three or four descriptors; the bound only stops a
	// corrupt image from being read forever.
	isoMaxDescriptors = 32
)

// WriteISO writes files to path as an ISO9660 volume with Rock Ridge and
// Joliet, labelled opts.Label (default "cidata"). The image is exactly as
// large as its content needs. Rock Ridge keeps the names readable as given
// (user-data, not USER_DAT.;1) by Linux's iso9660 driver and by cloud-init;
// Joliet does the same for other readers.
func WriteISO(path string, files []File, opts Options) error {
	if err := writeISO(path, files, opts); err != nil {
		return fmt.Errorf("writing ISO %s: %w", path, err)
	}
	return nil
}

func writeISO(path string, files []File, opts Options) error {
	files, err := checkFiles(files)
	if err != nil {
		return err
	}
	label := opts.Label
	if label == "" {
		label = defaultISOLabel
	}
	if err := checkISOLabel(label); err != nil {
		return err
	}
	mtime := modTime(opts.ModTime)
	if y := mtime.Year(); y < 1900 || y > 2155 {
		return fmt.Errorf("modification time %s is outside 1900..2155, the years an ISO9660 directory record can hold", mtime.Format(time.RFC3339))
	}
	// go-diskfs assembles an ISO from a staging directory ("workspace").
	// It lives next to the output, not in $TMPDIR, because /tmp is often a
	// RAM-backed tmpfs and the agent binary is up to 100 MB. MkdirTemp
	// makes it 0700, and it stays so: the staged files hold the seed's
	// secrets (normalizeISO records the medium's root as 0755 instead).
	ws, err := os.MkdirTemp(filepath.Dir(path), tempPattern(path, "work"))
	if err != nil {
		return err
	}
	defer os.RemoveAll(ws)
	return writeAtomic(path, func(out *os.File) error {
		return buildISO(out, ws, files, label, mtime)
	})
}

func buildISO(out *os.File, ws string, files []File, label string, mtime time.Time) error {
	fsys, err := iso9660.Create(zeroSkippingBackend(out), 0, 0, isoBlockSize, ws)
	if err != nil {
		return fmt.Errorf("creating ISO9660 file system: %w", err)
	}
	for _, f := range files {
		if err := stageISOFile(fsys, ws, f); err != nil {
			return err
		}
	}
	if err := fsys.Finalize(iso9660.FinalizeOptions{
		RockRidge:        true,
		Joliet:           true,
		VolumeIdentifier: label,
	}); err != nil {
		return fmt.Errorf("finalizing ISO9660 file system: %w", err)
	}
	return normalizeISO(out, mtime)
}

// zeroSkippingBackend hands go-diskfs a view of out that ignores writes of
// nothing but zero bytes. Finalize in go-diskfs v1.9 pads every file to a
// whole block, but for a file whose size is already a multiple of 2048 it
// writes a full block of zeros after the file instead, over whatever lies
// there; when that file is the last one, it wipes the first Joliet
// directory and Joliet readers fail. out starts empty and is cut to the
// volume size at the end (unwritten ranges read as zeros), so a zero write
// can only ever destroy data, never add any, and skipping all of them is
// exact.
func zeroSkippingBackend(out *os.File) backend.Storage {
	b := file.New(out, false)
	return zeroSkipping{Storage: b, w: zeroSkippingFile{out}}
}

type zeroSkipping struct {
	backend.Storage
	w backend.WritableFile
}

func (z zeroSkipping) Writable() (backend.WritableFile, error) { return z.w, nil }

type zeroSkippingFile struct{ *os.File }

func (z zeroSkippingFile) WriteAt(b []byte, off int64) (int, error) {
	for _, c := range b {
		if c != 0 {
			return z.File.WriteAt(b, off)
		}
	}
	return len(b), nil
}

func stageISOFile(fsys *iso9660.FileSystem, ws string, f File) error {
	w, err := fsys.OpenFile("/"+f.Name, os.O_CREATE|os.O_RDWR|os.O_TRUNC)
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
	// go-diskfs takes Rock Ridge permissions from the staged file but its
	// own Chmod is not implemented for ISO9660, so set them on the file.
	if err := os.Chmod(filepath.Join(ws, f.Name), f.Mode); err != nil {
		return fmt.Errorf("adding %s: %w", f.Name, err)
	}
	return nil
}

// checkISOLabel keeps the label within the 32-byte volume identifier and
// to printable ASCII, which every reader shows unchanged. Joliet holds only
// 16 characters; longer labels are shortened there, as genisoimage does.
func checkISOLabel(label string) error {
	if len(label) > 32 {
		return fmt.Errorf("volume label %q is longer than 32 characters", label)
	}
	for _, c := range label {
		if c < 0x20 || c > 0x7e {
			return fmt.Errorf("volume label %q contains %q; use printable ASCII", label, c)
		}
	}
	return nil
}

// normalizeISO rewrites the parts of a go-diskfs image that depend on when,
// where and by whom it was built, so equal inputs give equal bytes.
// go-diskfs v1.9 offers no option for any of these:
//
//   - The volume descriptors' creation, modification, expiration and
//     effective dates are all time.Now(), so the volume also claims to
//     expire the moment it is made.
//   - Directory record dates and Rock Ridge TF stamps come from stat(2) of
//     the staged files, in the build host's local time zone. The TF
//     attribute-change time is the staging file's ctime, which no program
//     can set.
//   - Rock Ridge PX records the building user's uid and gid, and the
//     staging directory's mode (0700) as the mode of the root directory.
//   - Text fields are padded with NUL bytes where ECMA-119 wants spaces
//     (UCS-2 spaces in the Joliet descriptor).
//
// Every date becomes mtime in UTC (expiration and effective become "not
// specified"), owners become root, directories become 0755, and padding
// becomes spaces. Finally the
// file is cut to the volume size recorded in the primary descriptor, since
// go-diskfs may pad one block past it.
func normalizeISO(f *os.File, mtime time.Time) error {
	n := &isoNormalizer{
		f:       f,
		visited: make(map[uint32]bool),
	}
	n.recStamp = [7]byte{byte(mtime.Year() - 1900), byte(mtime.Month()), byte(mtime.Day()), byte(mtime.Hour()), byte(mtime.Minute()), byte(mtime.Second()), 0}
	copy(n.decStamp[:16], mtime.Format("20060102150405")+"00")
	copy(n.unspecified[:16], "0000000000000000")

	var volumeBlocks uint32
	sawPrimary := false
	for i := range isoMaxDescriptors {
		vd := make([]byte, isoBlockSize)
		off := int64(isoFirstDescriptor+i) * isoBlockSize
		if _, err := f.ReadAt(vd, off); err != nil {
			return fmt.Errorf("reading volume descriptor %d: %w", i, err)
		}
		if string(vd[1:6]) != "CD001" {
			return fmt.Errorf("volume descriptor %d has no CD001 signature", i)
		}
		switch vd[0] {
		case 255: // set terminator
			if !sawPrimary {
				return errors.New("image has no primary volume descriptor")
			}
			return f.Truncate(int64(volumeBlocks) * isoBlockSize)
		case 1, 2: // primary, supplementary (Joliet)
			joliet := vd[0] == 2
			if !joliet {
				sawPrimary = true
				volumeBlocks = binary.LittleEndian.Uint32(vd[80:84])
			}
			n.fixDescriptor(vd, joliet)
			if _, err := f.WriteAt(vd, off); err != nil {
				return err
			}
			root := vd[156 : 156+34]
			if err := n.fixTree(binary.LittleEndian.Uint32(root[2:6]), binary.LittleEndian.Uint32(root[10:14]), !joliet); err != nil {
				return err
			}
		}
	}
	return errors.New("no volume descriptor set terminator")
}

type isoNormalizer struct {
	f           *os.File
	recStamp    [7]byte  // directory record / short TF form
	decStamp    [17]byte // volume descriptor / long TF form
	unspecified [17]byte
	visited     map[uint32]bool
	suspSkip    int
}

// Identifier fields of a primary or supplementary volume descriptor, as
// (offset, length); ECMA-119 8.4.
var isoIDFields = [][2]int{
	{8, 32}, {40, 32}, {190, 128}, {318, 128}, {446, 128}, {574, 128}, {702, 37}, {739, 37}, {776, 37},
}

func (n *isoNormalizer) fixDescriptor(vd []byte, joliet bool) {
	for _, fl := range isoIDFields {
		field := vd[fl[0] : fl[0]+fl[1]]
		if joliet {
			for j := 0; j+1 < len(field); j += 2 {
				if field[j] == 0 && field[j+1] == 0 {
					field[j+1] = ' '
				}
			}
			continue
		}
		for j := range field {
			if field[j] == 0 {
				field[j] = ' '
			}
		}
	}
	copy(vd[813:830], n.decStamp[:])    // creation
	copy(vd[830:847], n.decStamp[:])    // modification
	copy(vd[847:864], n.unspecified[:]) // expiration
	copy(vd[864:881], n.unspecified[:]) // effective
	copy(vd[156+18:156+25], n.recStamp[:])
}

type isoExtent struct{ block, size uint32 }

// fixTree walks one directory hierarchy breadth-first from its root extent.
func (n *isoNormalizer) fixTree(block, size uint32, susp bool) error {
	queue := []isoExtent{{block, size}}
	for len(queue) > 0 {
		dir := queue[0]
		queue = queue[1:]
		if n.visited[dir.block] {
			continue
		}
		n.visited[dir.block] = true
		subdirs, err := n.fixDir(dir, susp)
		if err != nil {
			return err
		}
		queue = append(queue, subdirs...)
	}
	return nil
}

func (n *isoNormalizer) fixDir(dir isoExtent, susp bool) ([]isoExtent, error) {
	buf := make([]byte, dir.size)
	off := int64(dir.block) * isoBlockSize
	if _, err := n.f.ReadAt(buf, off); err != nil {
		return nil, fmt.Errorf("reading directory at block %d: %w", dir.block, err)
	}
	var subdirs []isoExtent
	var continuations []isoCE
	for p := 0; p < len(buf); {
		l := int(buf[p])
		if l == 0 {
			// Records never span blocks; the rest of this block is padding.
			p = (p/isoBlockSize + 1) * isoBlockSize
			continue
		}
		if l < 34 || p+l > len(buf) {
			return nil, fmt.Errorf("malformed directory record at block %d offset %d", dir.block, p)
		}
		rec := buf[p : p+l]
		copy(rec[18:25], n.recStamp[:])
		nameLen := int(rec[32])
		if 33+nameLen > l {
			return nil, fmt.Errorf("malformed directory record at block %d offset %d", dir.block, p)
		}
		if susp {
			su := 33 + nameLen
			if nameLen%2 == 0 {
				su++ // padding byte keeps the system use area even
			}
			if su < l {
				continuations = append(continuations, n.fixSUSP(rec[su:])...)
			}
		}
		isSelfOrParent := nameLen == 1 && rec[33] <= 1
		if rec[25]&0x02 != 0 && !isSelfOrParent {
			subdirs = append(subdirs, isoExtent{binary.LittleEndian.Uint32(rec[2:6]), binary.LittleEndian.Uint32(rec[10:14])})
		}
		p += l
	}
	if _, err := n.f.WriteAt(buf, off); err != nil {
		return nil, err
	}
	// Continuation areas can point to further continuation areas; the
	// bound stops a corrupt chain from looping.
	for i := 0; i < len(continuations) && i < 1024; i++ {
		ce := continuations[i]
		area := make([]byte, ce.length)
		at := int64(ce.block)*isoBlockSize + int64(ce.offset)
		if _, err := n.f.ReadAt(area, at); err != nil {
			return nil, fmt.Errorf("reading continuation area at block %d: %w", ce.block, err)
		}
		continuations = append(continuations, n.fixSUSP(area)...)
		if _, err := n.f.WriteAt(area, at); err != nil {
			return nil, err
		}
	}
	return subdirs, nil
}

// isoCE points to a SUSP continuation area.
type isoCE struct{ block, offset, length uint32 }

// fixSUSP rewrites the System Use Sharing Protocol entries of one area and
// returns the continuation areas it points to.
func (n *isoNormalizer) fixSUSP(area []byte) []isoCE {
	var ces []isoCE
	start := 0
	if len(area) >= 7 && string(area[0:2]) == "SP" && area[4] == 0xBE && area[5] == 0xEF {
		n.suspSkip = int(area[6])
	} else {
		start = n.suspSkip
	}
	for i := start; i+4 <= len(area); {
		l := int(area[i+2])
		if l < 4 || i+l > len(area) {
			break
		}
		e := area[i : i+l]
		switch string(e[0:2]) {
		case "TF":
			if l < 5 {
				break
			}
			stamp := n.recStamp[:]
			if e[4]&0x80 != 0 {
				stamp = n.decStamp[:]
			}
			p := 5
			for range bits.OnesCount8(e[4] & 0x7f) {
				if p+len(stamp) > l {
					break
				}
				copy(e[p:], stamp)
				p += len(stamp)
			}
		case "PX":
			// Mode, links, uid and gid, each stored little- then
			// big-endian in 8 bytes.
			if l < 36 {
				break
			}
			if binary.LittleEndian.Uint32(e[4:8])&0o170000 == 0o040000 {
				binary.LittleEndian.PutUint32(e[4:8], 0o040755)
				binary.BigEndian.PutUint32(e[8:12], 0o040755)
			}
			clear(e[20:36])
		case "CE":
			if l >= 28 {
				ces = append(ces, isoCE{
					block:  binary.LittleEndian.Uint32(e[4:8]),
					offset: binary.LittleEndian.Uint32(e[12:16]),
					length: binary.LittleEndian.Uint32(e[20:24]),
				})
			}
		case "ST":
			return ces
		}
		i += l
	}
	return ces
}
