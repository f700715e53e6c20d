package image

import (
	"fmt"
	"os"
	"path/filepath"
)

// WriteDir writes files as plain files into dir, for PXE (served by
// Handler) and for cloud user-data. dir is created 0700 if missing and
// every file is written 0600 whatever its Mode, since the build host is
// not where the permissions inside a medium matter and seeds carry
// secrets.
//
// All files are staged and synced before the first one is renamed into
// place, so a failure while writing leaves the directory as it was. Each
// rename is atomic, but the set is not: a crash between renames can leave
// some files new and some old.
func WriteDir(dir string, files []File) error {
	if err := writeDir(dir, files); err != nil {
		return fmt.Errorf("writing seed files to %s: %w", dir, err)
	}
	return nil
}

func writeDir(dir string, files []File) (err error) {
	files, err = checkFiles(files)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	staged := make([]string, 0, len(files))
	defer func() {
		for _, tmp := range staged {
			if tmp != "" {
				_ = os.Remove(tmp)
			}
		}
	}()
	for _, f := range files {
		tmp, err := stageTemp(filepath.Join(dir, f.Name), func(out *os.File) error {
			_, err := out.Write(f.Data)
			return err
		})
		if err != nil {
			return fmt.Errorf("writing %s: %w", f.Name, err)
		}
		staged = append(staged, tmp)
	}
	for i, f := range files {
		if err := os.Rename(staged[i], filepath.Join(dir, f.Name)); err != nil {
			return fmt.Errorf("writing %s: %w", f.Name, err)
		}
		staged[i] = ""
	}
	return syncDir(dir)
}
