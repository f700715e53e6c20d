package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ksboot/ksboot/bootstrap/addons"
	"github.com/ksboot/ksboot/bootstrap/endpoint"
	"github.com/ksboot/ksboot/bootstrap/install"
	"github.com/ksboot/ksboot/bootstrap/install/artifacts"
	"github.com/ksboot/ksboot/bootstrap/joinorder"
	"github.com/ksboot/ksboot/bootstrap/kubeadm"
	"github.com/ksboot/ksboot/bootstrap/kubesphere"
	"github.com/ksboot/ksboot/bootstrap/loadbalancer"
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
		{Name: "kubeadm", Short: "kubeadm init or join (a control plane joins once the ones before it are ready)", Run: runKubeadm},
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
	if n.DryRun {
		return dryRunDiscover(ctx, n)
	}
	res, err := endpoint.Resolve(ctx, endpoint.Options{Config: n.Config, Logger: n.Logger, Timeout: n.DiscoverTimeout,
		Interface: mdnsInterface(n.Config, n.Name), DryRun: n.DryRun, Progress: discoverProgress(n)})
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

// dryRunDiscover says how the node would find its control plane without browsing mDNS or
// probing an endpoint, and goes on with what a first boot normally finds: on the init node no
// running cluster (so it initialises one), elsewhere the configured endpoint. Nothing it prints
// claims a certificate was verified, because nothing was contacted.
func dryRunDiscover(ctx context.Context, n *Node) error {
	res, err := endpoint.Resolve(ctx, endpoint.Options{Config: n.Config, Logger: n.Logger, DryRun: true})
	if err != nil {
		return err
	}
	how := "at the static endpoint " + res.Address
	if endpoint.StaticAddress(&n.Config.Cluster) == "" {
		// The interface is the node's, not that of the machine running the dry run.
		ifc := "interface " + n.Config.Cluster.Spec.Discovery.Interface
		if n.Config.Cluster.Spec.Discovery.Interface == "" {
			ifc = "the default interfaces"
			if h, ok := n.Config.Cluster.Host(n.Name); ok && h.Address != "" && !n.Config.Node.Generic {
				ifc = "the interface holding " + h.Address
			}
		}
		how = fmt.Sprintf("by mDNS (%s, cluster %s, CA id %s, on %s)", discovery.Service,
			n.Config.Cluster.Metadata.Name, cluster.ClusterID(n.Config.Secrets.CACertHash), ifc)
	}
	fmt.Fprintf(n.Console, "would discover: the control plane %s, verifying its certificate against the cluster CA (not contacted: a dry run sends nothing)\n", how)
	if initializes(n) {
		fmt.Fprintln(n.Console, "ksboot: dry run: assuming no running control plane of this cluster: this node initialises it")
		return osconfig.Hosts(n.Root, osconfig.HostsEntries(n.Config, n.AdvertiseAddress()))
	}
	n.Status.Endpoint = res.Address
	fmt.Fprintf(n.Console, "ksboot: dry run: assuming the control plane at %s\n", res.Address)
	// The configured endpoint may be the domain itself; /etc/hosts then gets the address the
	// cluster file gives the control plane, if any, rather than a name mapped to itself.
	ip := endpoint.Host(res.Address)
	if net.ParseIP(ip) == nil {
		ip = ""
	}
	return osconfig.Hosts(n.Root, osconfig.HostsEntries(n.Config, ip))
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
		// A dry run fetches nothing (issue 16): it writes the manifests ksboot generates and, for
		// Calico's, which is a downloaded artifact, says where it would come from and the digest it
		// must have, as the install phase does for binaries.
		files, fetches, err := addons.DryRun(ctx, n.Root.Path(ManifestsDir), opts)
		for _, f := range files {
			fmt.Fprintf(n.Console, "would apply: %s\n", f)
		}
		for _, f := range fetches {
			from := f.From
			if b := n.Config.Cluster.Spec.Artifacts.Bundle; b != "" {
				from = fmt.Sprintf("the offline bundle %s (manifests/%s)", b, f.Artifact.Name)
			}
			fmt.Fprintf(n.Console, "would fetch and apply: %s %s from %s, sha256 %s (not written: a dry run downloads nothing)\n",
				f.Component, f.Artifact.Name, from, f.Artifact.SHA256)
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
		if line, ok := chartFetch(n, opts); ok {
			fmt.Fprintln(n.Console, line)
			return nil
		}
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

// chartFetch is the dry run's line for a KubeSphere v4 ks-core chart that the kubesphere phase
// would take from the network or from the offline bundle, which a dry run does not mount: it
// names the source instead of loading the chart, so a dry run never downloads (issue 16). It
// is false when kubesphere.Render needs neither (v3's generated objects, a chart path on the
// node) or fails anyway (Render then reports the error).
func chartFetch(n *Node, opts kubesphere.Options) (string, bool) {
	p, err := kubesphere.ParamsFromCluster(opts.Cluster, opts.ConsoleAddress)
	if err != nil || p.Major == 3 {
		return "", false
	}
	bundle := n.Config.Cluster.Spec.Artifacts.Bundle
	const tail = ", render it with Helm and install it (not written: a dry run %s)"
	switch {
	case strings.HasPrefix(p.Chart, "http://") || strings.HasPrefix(p.Chart, "https://"):
		from := p.Chart
		if rel, err := kubesphere.BundleChartPath(p.Chart); err == nil && bundle != "" {
			from = fmt.Sprintf("the offline bundle %s (%s) when its manifest lists it, else %s", bundle, rel, p.Chart)
		}
		return fmt.Sprintf("would fetch: the ks-core chart %s from %s"+tail, p.Version, from, "downloads nothing"), true
	case !strings.Contains(p.Chart, "://") && !filepath.IsAbs(p.Chart) && bundle != "":
		return fmt.Sprintf("would load: the ks-core chart %s from the offline bundle %s (%s)"+tail, p.Version, bundle, p.Chart, "mounts no bundle"), true
	}
	return "", false
}

func runKubeadm(ctx context.Context, n *Node) error {
	role := kubeadm.RoleFor(n.Config, n.Status.Existing)
	// Only a control plane that has yet to join waits: not the init node, not workers, and
	// not one whose join finished before a restart.
	if role == kubeadm.RoleControlPlane && !n.Root.Exists(kubeadm.DoneMarker) {
		if err := waitJoinOrder(ctx, n); err != nil {
			return err
		}
	}
	p := kubeadm.ParamsFromNode(n.Config, n.Name, n.AdvertiseAddress(), n.Status.Endpoint)
	p.Role = role
	lb := loadbalancer.Node{Name: n.Name, ControlPlane: n.Config.Node.IsControlPlane(), Init: role == kubeadm.RoleInit}
	err := kubeadm.Run(ctx, kubeadm.RunOptions{
		Root: n.Root, Exec: n.Exec, Config: n.Config, Params: p, Logger: n.Logger, Console: n.Console,
		Stream: n.Journal, IgnorePreflight: kubeadm.IgnoredPreflightChecks(n.Config.Cluster.Spec.Preflight.WarnOnly),
		DryRun: n.DryRun,
		// The internal load balancer's static pods go in before every kubeadm init or join
		// attempt (a reset between attempts empties the manifests directory).
		Prepare: func(context.Context) error { return placeLoadBalancer(n, lb, loadbalancer.BeforeKubeadm) },
		Etcd:    etcdMembers(n, role),
	})
	if err != nil {
		return err
	}
	return finishLoadBalancer(ctx, n, lb)
}

// etcdMembers lets a joining control plane's failed kubeadm join find its own etcd member
// through the control planes before it (package joinorder); nothing for other roles or without
// a known advertise address, from which kubeadm makes the member's peer URL.
func etcdMembers(n *Node, role kubeadm.Role) kubeadm.EtcdMembers {
	addr := n.AdvertiseAddress()
	if role != kubeadm.RoleControlPlane || addr == "" {
		return kubeadm.EtcdMembers{}
	}
	o := joinorder.Options{Config: n.Config, Node: n.Name, Endpoint: n.Status.Endpoint, Logger: n.Logger}
	peerURL := "https://" + net.JoinHostPort(addr, strconv.Itoa(joinorder.EtcdPeerPort))
	return kubeadm.EtcdMembers{
		Stranded: func(ctx context.Context) (*joinorder.StrandedMember, error) {
			return joinorder.Stranded(ctx, o, peerURL)
		},
		Remove: func(ctx context.Context, id uint64) error { return joinorder.RemoveMember(ctx, o, id) },
	}
}

// waitJoinOrder holds a joining control plane until every control plane before it in
// spec.roleGroups.control-plane is ready (package joinorder), or in a dry run says what it would
// wait for. What it waits for goes into status.json's error too, which the announcement
// carries to `ksboot watch`.
func waitJoinOrder(ctx context.Context, n *Node) error {
	if n.DryRun {
		line, err := joinorder.Describe(&n.Config.Cluster, n.Name, n.JoinOrderTimeout)
		if line != "" {
			fmt.Fprintln(n.Console, line)
		}
		return err
	}
	err := joinorder.Wait(ctx, joinorder.Options{Config: n.Config, Node: n.Name, Endpoint: n.Status.Endpoint,
		Timeout: n.JoinOrderTimeout, Logger: n.Logger, Console: n.Console,
		Progress: func(p string) {
			n.Status.Error, n.Status.Updated = p, time.Now().UTC()
			if err := state.Write(string(n.Root), n.Status); err != nil {
				n.Logger.Warn("cannot record the join-order wait", "error", err)
			}
		}})
	if err != nil {
		return workflow.WithHint(err, "control planes join one at a time, in the order of spec.roleGroups.control-plane: "+
			"see why the ones named are not ready on their consoles or with `ksboot agent status` there (`ksboot watch` shows their phase); "+
			"this node asks again when ksboot-bootstrap.service restarts")
	}
	return nil
}

// placeLoadBalancer writes the internal load balancer's files of the stage, saying so.
func placeLoadBalancer(n *Node, lb loadbalancer.Node, stage loadbalancer.Stage) error {
	files, err := loadbalancer.Files(&n.Config.Cluster, lb, stage)
	if err != nil {
		return err
	}
	changed, err := loadbalancer.Write(n.Root, files)
	for _, f := range files {
		if slices.Contains(changed, f.Path) {
			fmt.Fprintf(n.Console, "ksboot: %s: wrote %s%s\n", loadbalancer.Kind(&n.Config.Cluster), f.Path, f.Note)
		}
	}
	return err
}

// finishLoadBalancer completes the internal load balancer once kubeadm has finished (again
// after a restart, so a crash in between is repaired): kube-vip switches to admin.conf, and
// with haproxy the endpoint domain moves to 127.0.0.1 on other nodes, once their haproxy
// reaches a control plane with the cluster's CA, and to the node's own API server on control
// planes.
func finishLoadBalancer(ctx context.Context, n *Node, lb loadbalancer.Node) error {
	if err := placeLoadBalancer(n, lb, loadbalancer.AfterKubeadm); err != nil {
		return err
	}
	c := &n.Config.Cluster
	ip := loadbalancer.EndpointIP(c, lb)
	if ip == "" {
		return nil
	}
	if !lb.ControlPlane {
		local := loadbalancer.LocalEndpoint(c)
		if n.DryRun {
			fmt.Fprintf(n.Console, "would wait: for haproxy at %s to reach a control plane with this cluster's CA (at most %s; not contacted: a dry run sends nothing)\n",
				local, loadbalancer.DefaultWait)
		} else {
			fmt.Fprintf(n.Console, "ksboot: waiting for haproxy at %s to reach a control plane\n", local)
			if err := loadbalancer.WaitLocal(ctx, n.Config, 0); err != nil {
				return workflow.WithHint(err, "look at the haproxy pod: crictl ps -a --name haproxy, crictl logs <id>; "+
					"/etc/ksboot/haproxy/haproxy.cfg names the control planes it forwards to")
			}
		}
	}
	fmt.Fprintf(n.Console, "ksboot: %s now resolves to %s (internal load balancer %s)\n", c.Spec.ControlPlaneEndpoint.Domain, ip, loadbalancer.Kind(c))
	return osconfig.Hosts(n.Root, osconfig.HostsEntries(n.Config, ip))
}
