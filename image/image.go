package image

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// File is one file placed in the root of a seed medium.
type File struct {
	// Name is a flat name such as "user-data", "meta-data",
	// "network-config" or "ksboot".
	Name string
	// Data is the complete content; it must not be empty.
	Data []byte
	// Mode holds the permission bits inside the medium (0644, or 0755 for
	// the agent binary). Zero means 0644. WriteDir ignores it: files on the
	// build host are always 0600 because seeds carry secrets.
	Mode fs.FileMode
}

// Options tune how a medium is packed. The zero value is valid.
type Options struct {
	// Label is the volume label; "" means "cidata" for ISO and "CIDATA"
	// for vfat, the labels cloud-init's NoCloud data source looks for.
	Label string
	// ModTime is stamped on every entry and on the volume itself; the zero
	// value means time.Now(). Set it (for example from SourceDateEpoch) to
	// get byte-identical images from identical inputs.
	ModTime time.Time
}

// maxNameLen keeps names inside the 64 UCS-2 characters a Joliet
// directory record can hold, so no medium has to shorten a name.
const maxNameLen = 64

// maxFileSize is the largest file ISO9660 (32-bit extent length) and FAT
// (32-bit file size) can store in a single entry.
const maxFileSize = math.MaxUint32

// defaultMode applies to files whose Mode is zero.
const defaultMode fs.FileMode = 0o644

// sourceDateEpochEnv is the variable defined by
// https://reproducible-builds.org/specs/source-date-epoch/.
const sourceDateEpochEnv = "SOURCE_DATE_EPOCH"

// SourceDateEpoch reads $SOURCE_DATE_EPOCH. ok is false when the variable is
// unset or empty. A value that is not a non-negative decimal number of
// seconds is an error rather than being ignored, because silently falling
// back to the current time would make a "reproducible" build quietly
// irreproducible.
func SourceDateEpoch() (t time.Time, ok bool, err error) {
	v, set := os.LookupEnv(sourceDateEpochEnv)
	if !set || v == "" {
		return time.Time{}, false, nil
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return time.Time{}, false, fmt.Errorf("parsing %s=%q: want the number of seconds since 1970-01-01 UTC, as printed by `date +%%s`", sourceDateEpochEnv, v)
		}
	}
	secs, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("parsing %s=%q: %w", sourceDateEpochEnv, v, err)
	}
	// Year 9999 is far past what any medium can record; anything larger is
	// a typo (milliseconds instead of seconds, most likely).
	const maxEpoch = 253402300799
	if secs > maxEpoch {
		return time.Time{}, false, fmt.Errorf("parsing %s=%q: later than year 9999; is it in milliseconds instead of seconds?", sourceDateEpochEnv, v)
	}
	return time.Unix(secs, 0).UTC(), true, nil
}

// modTime resolves Options.ModTime. Media record whole seconds, and UTC
// keeps the time zone of the build host out of the image bytes.
func modTime(t time.Time) time.Time {
	if t.IsZero() {
		t = time.Now()
	}
	return t.UTC().Truncate(time.Second)
}

// checkFiles validates a file set and returns a copy sorted by name with
// default modes filled in. Sorting makes the output independent of the
// order the caller happened to build the slice in.
func checkFiles(files []File) ([]File, error) {
	if len(files) == 0 {
		return nil, errors.New("no files given; a seed needs at least user-data and meta-data")
	}
	out := make([]File, len(files))
	seen := make(map[string]string, len(files))
	for i, f := range files {
		if err := checkName(f.Name); err != nil {
			return nil, err
		}
		// FAT compares names without case, so two names that differ only
		// in case would collide on a vfat seed; refuse them everywhere so
		// every format accepts the same file sets.
		folded := strings.ToLower(f.Name)
		if prev, dup := seen[folded]; dup {
			if prev == f.Name {
				return nil, fmt.Errorf("file %q given twice", f.Name)
			}
			return nil, fmt.Errorf("files %q and %q differ only in case; FAT would store them as one file", prev, f.Name)
		}
		seen[folded] = f.Name
		if len(f.Data) == 0 {
			return nil, fmt.Errorf("file %q is empty; an empty seed file is always a mistake, so ksboot refuses to write it", f.Name)
		}
		if int64(len(f.Data)) > maxFileSize {
			return nil, fmt.Errorf("file %q is %d bytes; ISO9660 and FAT store at most %d bytes per file", f.Name, len(f.Data), int64(maxFileSize))
		}
		if f.Mode&^fs.ModePerm != 0 {
			return nil, fmt.Errorf("file %q has mode %v; only permission bits (such as 0644 or 0755) are allowed", f.Name, f.Mode)
		}
		if f.Mode == 0 {
			f.Mode = defaultMode
		}
		out[i] = f
	}
	slices.SortFunc(out, func(a, b File) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// checkName accepts a deliberately small alphabet: it is valid unchanged
// as a Rock Ridge, Joliet and FAT long name and as an URL path segment, so
// a file reads back under exactly the name it was given. A leading dot is
// refused so that seed files can never clash with this package's temporary
// files, and so that Handler can refuse every dot file.
func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("file with an empty name")
	case len(name) > maxNameLen:
		return fmt.Errorf("file name %q is longer than %d characters", name, maxNameLen)
	case name[0] == '.':
		return fmt.Errorf("file name %q starts with a dot; seed files are never hidden", name)
	}
	for _, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
		if !ok {
			return fmt.Errorf("file name %q contains %q; use only letters, digits, '-', '_' and '.' (files sit flat in the root of the medium)", name, c)
		}
	}
	return nil
}

// tempPattern names temporary files and directories next to the target.
// The leading dot keeps them out of a casual ls and is never a valid seed
// file name (see checkName).
func tempPattern(path, kind string) string {
	return "." + filepath.Base(path) + "." + kind + "-*"
}

// writeAtomic builds path through a temporary file in the same directory
// (so the final rename cannot cross file systems), syncs it and renames it
// into place. build receives the open temporary file; on any error the
// temporary file is removed and path is left untouched.
func writeAtomic(path string, build func(f *os.File) error) error {
	tmp, err := stageTemp(path, build)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

// stageTemp creates a temporary file next to path, fills it with build,
// syncs and closes it, and returns its name. On error nothing is left.
func stageTemp(path string, build func(f *os.File) error) (tmp string, err error) {
	// os.CreateTemp creates the file 0600, which is what seeds need.
	f, err := os.CreateTemp(filepath.Dir(path), tempPattern(path, "tmp"))
	if err != nil {
		return "", err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if err := build(f); err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	// Close reports late write errors on some file systems (NFS), so it
	// is checked; a second Close in the deferred cleanup is harmless.
	if err := f.Close(); err != nil {
		return "", err
	}
	return f.Name(), nil
}

// syncDir makes a completed rename durable; without it a crash can bring
// back the old directory entry even though the file data was synced.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	serr := d.Sync()
	cerr := d.Close()
	if serr != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, serr)
	}
	return cerr
}
