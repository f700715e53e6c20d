package kubeadm

import (
	"fmt"
	"os"
	"path"
	"slices"

	"github.com/ksboot/ksboot/bootstrap/host"
)

// PatchesDir is kubeadm's patches directory on a node (patches.directory in the init and join
// configuration) when the cluster file has patches.
const PatchesDir = "/etc/ksboot/kubeadm-patches"

func (p Params) patchesDir() string {
	if p.PatchesDir != "" {
		return p.PatchesDir
	}
	return PatchesDir
}

// patchFileName is the name kubeadm reads a patch under: "target[suffix][+type].yaml". The
// suffix is the patch's index in the cluster file, zero-padded, because kubeadm applies the
// patches of one target in the lexical order of their file names.
func patchFileName(i int, target, typ string) string {
	return fmt.Sprintf("%s%03d+%s.yaml", target, i, typ)
}

// WritePatches makes the patches directory hold exactly the cluster file's patches: each is
// written atomically, and files left from an earlier cluster file are removed, so kubeadm never
// applies a patch the cluster file no longer has. Without patches it does nothing.
func WritePatches(root host.Root, p Params) error {
	if len(p.Patches) == 0 {
		return nil
	}
	dir := p.patchesDir()
	if err := root.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	var names []string
	for i, pt := range p.Patches {
		name := patchFileName(i, pt.Target, pt.Type)
		names = append(names, name)
		if _, err := root.WriteFile(path.Join(dir, name), []byte(pt.Patch), 0o600); err != nil {
			return fmt.Errorf("writing kubeadm patch %s: %w", name, err)
		}
	}
	entries, err := os.ReadDir(root.Path(dir))
	if err != nil {
		return fmt.Errorf("listing %s: %w", dir, err)
	}
	for _, e := range entries {
		if !e.IsDir() && !slices.Contains(names, e.Name()) {
			if err := root.Remove(path.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}
