package install

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/ksboot/ksboot/bootstrap/host"
	"github.com/ksboot/ksboot/bootstrap/install/artifacts"
	"github.com/ksboot/ksboot/bootstrap/workflow"
	"github.com/ksboot/ksboot/cluster"
)

// Where the install phase puts things on the node.
const (
	// BinDir receives kubeadm, kubelet, kubectl, crictl and containerd's binaries: the
	// directory containerd's own unit and the release tarball assume.
	BinDir = "/usr/local/bin"
	// SbinDir receives runc, as containerd's getting-started guide installs it (systemd's
	// default PATH has it, so containerd finds runc by name).
	SbinDir = "/usr/local/sbin"
	// CNIBinDir receives the CNI plugins, where containerd's CRI plugin looks by default.
	CNIBinDir = "/opt/cni/bin"
	// StateDir holds one record per installed artifact (what was installed, with digests),
	// which makes a second run skip what is already in place without any network access.
	StateDir = "/var/lib/ksboot/install"
	// DownloadDir holds release tarballs between download and extraction.
	DownloadDir = "/var/lib/ksboot/downloads"
)

// Options configure the install phase.
type Options struct {
	Root host.Root
	Exec host.Runner
	// Config is the node config; the phase reads the Kubernetes version, the registry,
	// spec.artifacts and spec.zone.
	Config *cluster.NodeConfig
	OS     host.OS
	// Arch is amd64 or arm64 (the caller maps uname -m).
	Arch    string
	Logger  *slog.Logger
	Console io.Writer // one short human line per step
	// HTTP downloads from mirrors; nil means artifacts.DefaultHTTPClient().
	HTTP *http.Client
	// Source, when set, is used instead of the source spec.artifacts selects (tests wrap a
	// real source in it; a caller that already opened the bundle passes it on).
	Source artifacts.Source
}

// step is one part of the phase, in order.
type step struct {
	name string
	run  func(context.Context, Options) error
}

var steps = []step{
	{"packages", Packages},
	{"binaries", Binaries},
	{"configure", Configure},
	{"images", ImportImages},
	{"verify", Verify},
	{"cri", CRIReady},
}

// Run installs everything a node needs before kubeadm: OS packages, binaries, runtime
// configuration, image archives; then checks the installed versions. Every step is idempotent
// and every file lands atomically, so a run killed anywhere and started again ends with the
// same files as an uninterrupted one.
func Run(ctx context.Context, o Options) error {
	o, err := o.prepare(ctx)
	if err != nil {
		return err
	}
	for _, s := range steps {
		if err := s.run(ctx, o); err != nil {
			return fmt.Errorf("install %s: %w", s.name, err)
		}
	}
	return nil
}

// prepare checks the options, fills defaults and opens the artifact source once.
func (o Options) prepare(ctx context.Context) (Options, error) {
	if o.Config == nil {
		return o, errors.New("install: no node config")
	}
	if o.Exec == nil {
		return o, errors.New("install: no command runner")
	}
	if o.Root == "" {
		o.Root = "/"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Console == nil {
		o.Console = io.Discard
	}
	if o.Arch != "amd64" && o.Arch != "arm64" {
		return o, fmt.Errorf("install: architecture %q is not supported (amd64, arm64)", o.Arch)
	}
	if o.kubernetesVersion() == "" {
		return o, errors.New("install: the node config names no Kubernetes version")
	}
	if o.Source == nil {
		src, err := openSource(ctx, o)
		if err != nil {
			return o, err
		}
		o.Source = src
	}
	return o, nil
}

// GoArch maps `uname -m` to the architecture names release downloads use, for Options.Arch.
func GoArch(unameMachine string) (string, error) {
	switch strings.TrimSpace(unameMachine) {
	case "x86_64", "amd64":
		return "amd64", nil
	case "aarch64", "arm64":
		return "arm64", nil
	}
	return "", fmt.Errorf("machine architecture %q is not supported (x86_64, aarch64)", strings.TrimSpace(unameMachine))
}

func (o Options) kubernetesVersion() string { return o.Config.Cluster.Spec.Kubernetes.Version }

// openSource picks the artifact source from spec.artifacts: the bundle when one is named
// (never falling back to the network: an offline site must not wait on timeouts), else the
// HTTP mirror (spec.artifacts.mirror, zone: cn, or upstream).
func openSource(ctx context.Context, o Options) (artifacts.Source, error) {
	spec := o.Config.Cluster.Spec
	if spec.Artifacts.Bundle != "" {
		b, err := artifacts.Locator{Root: o.Root, Exec: o.Exec}.Open(ctx, spec.Artifacts.Bundle)
		if err != nil {
			return nil, workflow.WithHint(err, "attach the bundle made by `ksboot bundle` (volume label "+artifacts.DefaultLabel+
				") or fix spec.artifacts.bundle")
		}
		o.Logger.Info("artifact source", "bundle", b.NodeDir, "artifacts", len(b.Manifest.Artifacts))
		return b, nil
	}
	m := artifacts.NewHTTPMirror(spec.Artifacts, spec.Zone, o.HTTP)
	o.Logger.Info("artifact source", "mirror", m.String())
	return m, nil
}

// sourceHint is the advice for an artifact that could not be installed.
func sourceHint(err error, src artifacts.Source) error {
	switch {
	case errors.Is(err, artifacts.ErrChecksum):
		return workflow.WithHint(err, fmt.Sprintf("the file in %s is damaged or not the published release; fix the mirror or rebuild the bundle", src))
	case errors.Is(err, artifacts.ErrNotFound):
		return workflow.WithHint(err, fmt.Sprintf("%s does not have it; check the versions in the cluster file or rebuild the bundle with them", src))
	case errors.Is(err, artifacts.ErrUnreachable):
		return workflow.WithHint(err, "check the node's network and proxy, set spec.artifacts.mirror, or use an offline bundle (spec.artifacts.bundle)")
	}
	return workflow.WithHint(err, fmt.Sprintf("%s serves a file that is not the release ksboot expects; fix the source", src))
}

// dryRun reports whether commands are only printed (host.DryRun). Their answers are then
// made up, so checks of what a command achieved (packages present afterwards, images listed,
// versions) are skipped rather than failed.
func (o Options) dryRun() bool {
	_, ok := o.Exec.(*host.DryRun)
	return ok
}

func (o Options) say(format string, args ...any) {
	fmt.Fprintf(o.Console, "ksboot: install: "+format+"\n", args...)
}

func joinNames(names []string) string { return strings.Join(names, ", ") }
