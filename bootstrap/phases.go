package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ksboot/ksboot/bootstrap/addons"
	"github.com/ksboot/ksboot/bootstrap/endpoint"
	"github.com/ksboot/ksboot/bootstrap/install"
	"github.com/ksboot/ksboot/bootstrap/install/artifacts"
	"github.com/ksboot/ksboot/bootstrap/kubeadm"
	"github.com/ksboot/ksboot/bootstrap/kubesphere"
	"github.com/ksboot/ksboot/bootstrap/osconfig"
	"github.com/ksboot/ksboot/bootstrap/preflight"
	"github.com/ksboot/ksboot/bootstrap/state"
	"github.com/ksboot/ksboot/bootstrap/workflow"
	"github.com/ksboot/ksboot/cluster"
	"github.com/ksboot/ksboot/discovery"
)

// Phases is the agent's workflow, in order. Each phase is a thin adapter: the work is done by
// the package it calls.
func Phases() []workflow.Phase[*Node] {
	return []workflow.Phase[*Node]{
		{Name: "preflight", Short: "check this machine against the node requirements", Run: runPreflight},
		{Name: "os", Short: "prepare the OS: host name, /etc/hosts, swap, kernel modules, sysctls, time, firewall", Run: runOS},
		{Name: "install", Short: "install OS packages, containerd, runc, CNI plugins, crictl, kubeadm, kubelet, kubectl", Run: runInstall},
		{Name: "discover", Short: "find and verify the control plane (mDNS or static endpoint)", Run: runDiscover},
		{Name: "kubeadm", Short: "kubeadm init or join", Run: runKubeadm},
		{Name: "addons", Short: "deploy the CNI and default storage, label nodes, wait for every node to be Ready", Run: runAddons,
			RunIf: initializes},
		{Name: "kubesphere", Short: "deploy KubeSphere and print the welcome banner", Run: runKubeSphere,
			RunIf: func(n *Node) bool { return initializes(n) && n.Config.Cluster.Spec.KubeSphere.Enabled }},
	}
}

// PhaseNames lists the phases for help texts.
func PhaseNames() string { return strings.Join(workflow.Names(Phases()), ", ") }

func runPreflight(ctx context.Context, n *Node) error {
	report, err := preflight.Run(ctx, preflight.Options{
		Root: n.Root, Exec: n.Exec, NodeName: n.Name, Roles: n.Config.Node.Roles,
		KubernetesVersion: n.Config.Cluster.Spec.Kubernetes.Version,
		WarnOnly:          n.Config.Cluster.Spec.Preflight.WarnOnly, DryRun: n.DryRun,
	})
	for _, r := range report {
		switch {
		case r.OK:
			n.Logger.Info("preflight check passed", "check", r.Check, "result", r.Message)
		case r.Warning:
			n.Logger.Warn("preflight check failed (warning only)", "check", r.Check, "result", r.Message)
			fmt.Fprintf(n.Console, "ksboot: preflight warning: %s: %s\n", r.Check, r.Message)
		default:
			n.Logger.Error("preflight check failed", "check", r.Check, "result", r.Message)
		}
	}
	if err != nil && n.DryRun {
		// A dry run measures a directory, not the node: report, do not stop.
		fmt.Fprintf(n.Console, "ksboot: dry run: on this root preflight would fail: %v\n", err)
		return nil
	}
	if err != nil {
		return workflow.WithHint(err, "fix the machine, or list the check under spec.preflight.warnOnly in the cluster file and rebuild the seed")
	}
	return nil
}

func runOS(ctx context.Context, n *Node) error {
	return osconfig.Run(ctx, osconfig.Options{Root: n.Root, Exec: n.Exec, Config: n.Config, NodeName: n.Name, Logger: n.Logger, Console: n.Console})
}

func runInstall(ctx context.Context, n *Node) error {
	o := install.Options{Root: n.Root, Exec: n.Exec, Config: n.Config, OS: n.OS, Arch: n.Arch,
		Logger: n.Logger, Console: n.Console, HTTP: n.HTTP}
	if !n.DryRun {
		return install.Run(ctx, o)
	}
	// A dry run downloads nothing: it says where every artifact would come from, then prints the
	// package commands and writes the runtime configuration under the root.
	spec := n.Config.Cluster.Spec
	for _, a := range artifacts.Components(spec.Kubernetes.Version, n.Arch) {
		from := "the offline bundle " + spec.Artifacts.Bundle
		if spec.Artifacts.Bundle == "" {
			from = artifacts.NewHTTPMirror(spec.Artifacts, spec.Zone, nil).Location(a)
		}
		fmt.Fprintf(n.Console, "would install: %s %s (%s) from %s, sha256-checked\n", a.Name, a.Version, a.Arch, from)
	}
	if err := install.Packages(ctx, o); err != nil {
		return err
	}
	return install.Configure(ctx, o)
}

func runDiscover(ctx context.Context, n *Node) error {
	res, err := endpoint.Resolve(ctx, endpoint.Options{Config: n.Config, Logger: n.Logger, Timeout: n.DiscoverTimeout,
		Interface:    mdnsInterface(n.Config, n.Name),
		JoinedPhases: JoinedOrLater, DryRun: n.DryRun, Progress: discoverProgress(n)})
	if err != nil {
		return workflow.WithHint(err, "check the network between the nodes (ksboot watch, ksboot discover --config /etc/ksboot/node.yaml)")
	}
	n.Status.Endpoint, n.Status.Existing = res.Address, res.Existing
	if res.Address != "" {
		fmt.Fprintf(n.Console, "ksboot: control plane at %s (%s, certificate verified against the cluster CA)\n", res.Address, res.Source)
		// lb.kubesphere.local (the kubeadm controlPlaneEndpoint) now resolves to the API server found.
		return osconfig.Hosts(n.Root, osconfig.HostsEntries(n.Config, endpoint.Host(res.Address)))
	}
	fmt.Fprintln(n.Console, "ksboot: no running control plane of this cluster: this node initialises it")
	return osconfig.Hosts(n.Root, osconfig.HostsEntries(n.Config, n.AdvertiseAddress()))
}

// discoverProgress reports, while the node waits for its control plane, what is in the way:
// nodes of a same-named cluster with another CA, or endpoints that failed verification. Each
// new problem goes to the console once and into status.json's error, which the announcement
// carries (err=) to `ksboot watch`; a node stuck behind a wrong seed says so long before its
// wait ends.
func discoverProgress(n *Node) func(discovery.Progress) {
	last := ""
	return func(p discovery.Progress) {
		var problem string
		// Only an endpoint whose certificate is not the cluster CA's is an obstacle; one that
		// does not answer yet is what the wait is for.
		var untrusted []discovery.Rejection
		for _, r := range p.Rejected {
			var ue *discovery.UntrustedError
			if errors.As(r.Err, &ue) {
				untrusted = append(untrusted, r)
			}
		}
		switch {
		case len(untrusted) > 0:
			r := untrusted[len(untrusted)-1]
			problem = "waiting for the control plane: refused " + r.String()
			if r.Peer.Node == "" { // a static endpoint: the message does not name it
				problem = fmt.Sprintf("waiting for the control plane: refused %s: %v", r.Addr, r.Err)
			}
		case len(p.Foreign) > 0:
			peers := make([]string, len(p.Foreign))
			for i, f := range p.Foreign {
				peers[i] = f.String()
			}
			problem = fmt.Sprintf("waiting for the control plane: ignoring %d node(s) announcing cluster %q with a different CA (CA id %s, this seed's is %s): %s",
				len(p.Foreign), n.Config.Cluster.Metadata.Name, p.Foreign[0].ID, cluster.ClusterID(n.Config.Secrets.CACertHash), strings.Join(peers, ", "))
		}
		if problem == "" || problem == last {
			return
		}
		last = problem
		fmt.Fprintf(n.Console, "ksboot: %s\n", problem)
		n.Status.Error, n.Status.Updated = problem, time.Now().UTC()
		if err := state.Write(string(n.Root), n.Status); err != nil {
			n.Logger.Warn("cannot record discovery progress", "error", err)
		}
	}
}

// initializes is true on the node that ran kubeadm init: it finishes the cluster.
func initializes(n *Node) bool { return n.Config.Node.Init && !n.Status.Existing }

// ManifestsDir is where a dry run writes the objects the addons and kubesphere phases would apply.
const ManifestsDir = "/etc/ksboot/manifests"

func runAddons(ctx context.Context, n *Node) error {
	opts := addons.Options{Cluster: &n.Config.Cluster, Logger: n.Logger}
	if n.DryRun {
		files, err := addons.Render(ctx, n.Root.Path(ManifestsDir), opts)
		for _, f := range files {
			fmt.Fprintf(n.Console, "would apply: %s\n", f)
		}
		return err
	}
	cfg, err := n.AdminConfig()
	if err != nil {
		return err
	}
	if dir, err := bundleDir(ctx, n); err != nil {
		return err
	} else if dir != "" {
		opts.CalicoSource = addons.DirSource{Dir: dir}
	}
	return addons.Run(ctx, cfg, opts)
}

// bundleDir is the offline bundle's directory on this machine when the cluster file names one
// (mounted by the install phase, or now after a restart), else "": the addons and kubesphere
// phases then take Calico's manifest and the ks-core chart from it instead of the network.
func bundleDir(ctx context.Context, n *Node) (string, error) {
	spec := n.Config.Cluster.Spec.Artifacts.Bundle
	if spec == "" {
		return "", nil
	}
	b, err := artifacts.Locator{Root: n.Root, Exec: n.Exec}.Open(ctx, spec)
	if err != nil {
		return "", workflow.WithHint(err, "attach the bundle (spec.artifacts.bundle) again and restart ksboot-bootstrap.service")
	}
	return b.Dir, nil
}

func runKubeSphere(ctx context.Context, n *Node) error {
	opts := kubesphere.Options{Cluster: &n.Config.Cluster, ConsoleAddress: n.AdvertiseAddress(), Root: string(n.Root), Logger: n.Logger,
		Timeout: n.Config.Cluster.Spec.KubeSphere.WaitTimeout()}
	if n.DryRun {
		f, err := kubesphere.Render(ctx, n.Root.Path(ManifestsDir), opts)
		if err == nil {
			fmt.Fprintf(n.Console, "would apply: %s\n", f)
		}
		return err
	}
	cfg, err := n.AdminConfig()
	if err != nil {
		return err
	}
	if opts.BundleDir, err = bundleDir(ctx, n); err != nil {
		return err
	}
	banner, err := kubesphere.Run(ctx, cfg, opts)
	if err != nil {
		return err
	}
	n.Status.Banner, n.Status.Console = banner.String(), banner.Console
	fmt.Fprintln(n.Console, banner.String())
	return nil
}

func runKubeadm(ctx context.Context, n *Node) error {
	role := kubeadm.RoleFor(n.Config, n.Status.Existing)
	p := kubeadm.ParamsFromNode(n.Config, n.Name, n.AdvertiseAddress(), n.Status.Endpoint)
	p.Role = role
	return kubeadm.Run(ctx, kubeadm.RunOptions{
		Root: n.Root, Exec: n.Exec, Config: n.Config, Params: p, Logger: n.Logger, Console: n.Console,
		Stream: n.Journal, IgnorePreflight: kubeadm.IgnoredPreflightChecks(n.Config.Cluster.Spec.Preflight.WarnOnly),
		DryRun: n.DryRun,
	})
}
