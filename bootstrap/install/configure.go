package install

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"

	"github.com/ksboot/ksboot/bootstrap/host"
	"github.com/ksboot/ksboot/bootstrap/install/runtime"
	"github.com/ksboot/ksboot/bootstrap/kubeadm"
	"github.com/ksboot/ksboot/bootstrap/workflow"
	"github.com/ksboot/ksboot/versions"
)

// RuntimeParams derives the runtime configuration from the node config: the sandbox image is
// the pause image kubeadm will use for this cluster (same version table, same image
// repository rules as the kubeadm configuration ksboot renders).
func RuntimeParams(o Options) runtime.Params {
	repo := kubeadm.ParamsFromNode(o.Config, "", "", "").ImageRepository
	return runtime.Params{
		SandboxImage:      PauseImage(o.kubernetesVersion(), repo),
		Registry:          o.Config.Cluster.Spec.Registry,
		ContainerdVersion: versions.MustLookup(o.kubernetesVersion()).Containerd,
	}
}

// Configure writes containerd's configuration, the registry hosts files, the containerd and
// kubelet units with kubeadm's drop-in and crictl's configuration, removes registry hosts files
// ksboot wrote earlier and no longer wants, then reloads systemd, enables both services and
// (re)starts containerd.
//
// containerd is restarted on every run rather than started with `enable --now`: a running
// containerd (a distribution's, or ours from an interrupted run) only reads config.toml at
// startup, and a run killed after writing the file but before the restart would otherwise
// never apply it. A restart does not stop running containers (KillMode=process).
func Configure(ctx context.Context, o Options) error {
	o, err := o.prepare(ctx)
	if err != nil {
		return err
	}
	p := RuntimeParams(o)
	files, err := runtime.Files(p)
	if err != nil {
		return err
	}
	var changed []string
	for _, f := range files {
		ch, err := o.Root.WriteFile(f.Path, f.Data, f.Mode)
		if err != nil {
			return err
		}
		if ch {
			changed = append(changed, f.Path)
			o.Logger.Info("wrote", "path", f.Path)
		}
	}
	removed, err := pruneHostsFiles(o, files)
	if err != nil {
		return err
	}
	// The kubelet's static pod directory, which the kubelet package creates on distributions:
	// without it a worker's kubelet logs an error every second (found by the e2e suite).
	if err := o.Root.MkdirAll(kubeadm.ManifestsDir, 0o755); err != nil {
		return err
	}
	for _, c := range [][]string{
		{"daemon-reload"},
		{"enable", "containerd.service", "kubelet.service"},
		{"restart", "containerd.service"},
	} {
		if _, err := o.Exec.Run(ctx, host.Cmd{Name: "systemctl", Args: c}); err != nil {
			return workflow.WithHint(fmt.Errorf("configuring the container runtime: %w", err),
				"see `journalctl -u containerd` for why containerd did not start")
		}
	}
	o.say("runtime: containerd configured (sandbox image %s, %d files changed, %d removed) and running", p.SandboxImage, len(changed), len(removed))
	return nil
}

// pruneHostsFiles removes certs.d/<host>/hosts.toml files that carry ksboot's header but are
// no longer part of the configuration (a mirror or insecure registry removed from the cluster
// file), with their directory when it is then empty.
func pruneHostsFiles(o Options, keep []runtime.File) ([]string, error) {
	entries, err := os.ReadDir(o.Root.Path(runtime.CertsDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", runtime.CertsDir, err)
	}
	var removed []string
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		p := path.Join(runtime.CertsDir, e.Name(), "hosts.toml")
		if slices.ContainsFunc(keep, func(f runtime.File) bool { return f.Path == p }) {
			continue
		}
		data, err := o.Root.ReadFile(p)
		if err != nil || !runtime.IsManaged(data) {
			continue
		}
		if err := o.Root.Remove(p); err != nil {
			return nil, err
		}
		_ = os.Remove(o.Root.Path(path.Dir(p))) // only succeeds when empty
		o.Logger.Info("removed registry hosts file no longer configured", "path", p)
		removed = append(removed, p)
	}
	return removed, nil
}
