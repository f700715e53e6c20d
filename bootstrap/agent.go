package bootstrap

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ksboot/ksboot/bootstrap/host"
	"github.com/ksboot/ksboot/bootstrap/preflight"
	"github.com/ksboot/ksboot/bootstrap/state"
	"github.com/ksboot/ksboot/bootstrap/workflow"
	"github.com/ksboot/ksboot/cluster"
)

// Options configure one agent run.
type Options struct {
	// ConfigPath is the node config, normally /etc/ksboot/node.yaml. It is read under Root.
	ConfigPath string
	// Root is prepended to every path the agent reads or writes on the host ("/" on a node).
	Root string
	// Version is the agent's own version, logged and recorded.
	Version string
	// Logger receives structured progress (the journal on a node).
	Logger *slog.Logger
	// Console receives one short human line per event (the serial console on a node).
	Console io.Writer
	// Exec runs commands; nil means the real machine (or a printer in DryRun).
	Exec host.Runner
	// DryRun prints every command instead of running it and writes files only under Root.
	DryRun bool
	// Skip and Only select phases (ksboot agent run --skip-phases, ksboot agent phase NAME).
	Skip []string
	Only string
	// DiscoverTimeout bounds the wait for the control plane.
	DiscoverTimeout time.Duration
	// HTTP downloads artifacts; nil means a default client.
	HTTP *http.Client
	// Interfaces lists the host's addresses; nil means the real interfaces.
	Interfaces func() ([]string, error)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Node is the data every phase shares: who the node is and how to reach the machine.
type Node struct {
	Config          *cluster.NodeConfig
	Name            string
	Addresses       []string
	Root            host.Root
	Exec            host.Runner
	OS              host.OS
	Arch            string
	DryRun          bool
	Logger          *slog.Logger
	Console         io.Writer
	Journal         io.Writer // long command output (kubeadm) goes here
	HTTP            *http.Client
	DiscoverTimeout time.Duration
	Status          *state.Status
}

// AdvertiseAddress is the address the node's API server and kubelet use: the static address
// from the cluster file, else the first IPv4 address of the machine.
func (n *Node) AdvertiseAddress() string {
	if h, ok := n.Config.Cluster.Host(n.Name); ok && h.Address != "" && !n.Config.Node.Generic {
		ip, _, _ := strings.Cut(h.Address, "/")
		return ip
	}
	for _, a := range n.Addresses {
		ip, _, _ := strings.Cut(a, "/")
		if p := net.ParseIP(ip); p != nil && p.To4() != nil {
			return ip
		}
	}
	return ""
}

// AdminConfig is the client configuration of the cluster's admin kubeconfig on this control plane.
func (n *Node) AdminConfig() (*rest.Config, error) {
	path := n.Root.Path("/etc/kubernetes/admin.conf")
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("reading the admin kubeconfig %s: %w", path, err)
	}
	return cfg, nil
}

// Identity is who this node is, as worked out from the node config and the machine.
type Identity struct {
	Cluster   string
	Node      string
	Roles     []string
	Init      bool
	Addresses []string
}

// Run loads the node config, establishes the node's identity and runs the phases. A reboot or a
// crash resumes at the phase that did not finish; a phase failure is returned as a
// *workflow.PhaseError after the failure marker is written.
func Run(ctx context.Context, o Options) (*Identity, error) {
	o = o.withDefaults()
	n, id, err := setup(ctx, o)
	if err != nil {
		return nil, err
	}
	err = workflow.Run(ctx, Phases(), n, workflow.Options{
		Root: n.Root, Logger: o.Logger, Console: o.Console, Now: o.Now, Skip: o.Skip, Only: o.Only, Status: n.Status,
	})
	if err == nil && o.Only == "" {
		fmt.Fprintf(o.Console, "ksboot: node %s is bootstrapped\n", n.Name)
	}
	return id, err
}

// setup reads the node config and status and measures the machine.
func setup(ctx context.Context, o Options) (*Node, *Identity, error) {
	root := host.Root(o.Root)
	nc, err := cluster.LoadNodeConfig(o.path(o.ConfigPath))
	if err != nil {
		return nil, nil, err
	}
	name, err := NodeName(nc, o.Root)
	if err != nil {
		return nil, nil, err
	}
	addrs, err := o.Interfaces()
	if err != nil {
		return nil, nil, fmt.Errorf("listing network addresses: %w", err)
	}
	id := &Identity{Cluster: nc.Cluster.Name(), Node: name, Roles: nc.Node.Roles, Init: nc.Node.Init, Addresses: addrs}
	o.Logger.InfoContext(ctx, "ksboot agent started", "version", o.Version, "cluster", id.Cluster, "node", id.Node,
		"roles", strings.Join(id.Roles, ","), "init", id.Init, "addresses", strings.Join(addrs, ","), "dry_run", o.DryRun)
	fmt.Fprintf(o.Console, "ksboot %s: node %s, role %s, cluster %s, addresses %s\n",
		o.Version, id.Node, strings.Join(id.Roles, "+"), id.Cluster, strings.Join(addrs, " "))
	st, err := state.Read(o.Root)
	if err != nil {
		return nil, nil, err
	}
	if st == nil {
		st = &state.Status{}
	}
	st.Version, st.Cluster, st.Node, st.Roles, st.Init, st.Addresses = o.Version, id.Cluster, id.Node, id.Roles, id.Init, addrs
	st.Updated = o.Now().UTC()
	if err := state.Write(o.Root, st); err != nil {
		return nil, nil, err
	}
	n := &Node{Config: nc, Name: name, Addresses: addrs, Root: root, Exec: o.Exec, DryRun: o.DryRun,
		Logger: o.Logger, Console: o.Console, Journal: o.Console, HTTP: o.HTTP, DiscoverTimeout: o.DiscoverTimeout, Status: st}
	if n.OS, err = host.ReadOS(root); err != nil {
		o.Logger.Warn("cannot identify the OS; preflight reports it", "error", err)
	}
	if o.DryRun {
		n.Arch = runtime.GOARCH
	} else if n.Arch, err = preflight.Arch(ctx, o.Exec); err != nil {
		return nil, nil, err
	}
	return n, id, nil
}

func (o Options) withDefaults() Options {
	if o.Root == "" {
		o.Root = "/"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Console == nil {
		o.Console = io.Discard
	}
	if o.Exec == nil {
		if o.DryRun {
			o.Exec = &host.DryRun{Out: o.Console, Output: map[string]string{"timedatectl": "yes\n", "uname": "x86_64\n"}}
		} else {
			o.Exec = host.Real{}
		}
	}
	if o.Interfaces == nil {
		o.Interfaces = HostAddresses
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// path resolves an absolute node path under the root.
func (o Options) path(p string) string {
	if filepath.IsAbs(p) && o.Root != "/" {
		return filepath.Join(o.Root, p)
	}
	return p
}

// NodeName is the node's name: the host name from the seed, or for a generic worker seed a name
// derived from /etc/machine-id ("worker-" + 10 hex digits of its hash), which is unique per
// machine, stable across reboots and a valid RFC 1123 label.
func NodeName(nc *cluster.NodeConfig, root string) (string, error) {
	if !nc.Node.Generic {
		return nc.Node.Name, nil
	}
	data, err := os.ReadFile(filepath.Join(root, "etc/machine-id"))
	if err != nil {
		return "", fmt.Errorf("deriving the node name of a generic worker: %w", err)
	}
	id := strings.TrimSpace(string(data))
	if id == "" {
		return "", fmt.Errorf("deriving the node name of a generic worker: %s is empty", filepath.Join(root, "etc/machine-id"))
	}
	sum := sha256.Sum256([]byte(id))
	return "worker-" + hex.EncodeToString(sum[:])[:10], nil
}

// HostAddresses lists the global unicast addresses of the machine in CIDR form, sorted.
func HostAddresses() ([]string, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, ifc := range ifaces {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || !ipn.IP.IsGlobalUnicast() {
				continue
			}
			out = append(out, ipn.String())
		}
	}
	sort.Strings(out)
	return out, nil
}
