package bootstrap

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/ksboot/ksboot/bootstrap/state"
	"github.com/ksboot/ksboot/cluster"
)

// Options configure one agent run.
type Options struct {
	// ConfigPath is the node config, normally /etc/ksboot/node.yaml.
	ConfigPath string
	// Root is prepended to every path the agent reads or writes on the host ("/" on a node).
	Root string
	// Version is the agent's own version, logged and recorded.
	Version string
	// Logger receives structured progress (the journal on a node).
	Logger *slog.Logger
	// Console receives one short human line per event (the serial console on a node).
	Console io.Writer
	// Interfaces lists the host's addresses; nil means the real interfaces.
	Interfaces func() ([]string, error)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Identity is who this node is, as worked out from the node config and the machine.
type Identity struct {
	Cluster   string
	Node      string
	Roles     []string
	Init      bool
	Addresses []string
}

// Run loads the node config, establishes the node's identity, reports it and records it in
// status.json. The phases (preflight … kubeadm) build on this.
func Run(ctx context.Context, o Options) (*Identity, error) {
	o = o.withDefaults()
	nc, err := cluster.LoadNodeConfig(o.path(o.ConfigPath))
	if err != nil {
		return nil, err
	}
	name, err := NodeName(nc, o.Root)
	if err != nil {
		return nil, err
	}
	addrs, err := o.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("listing network addresses: %w", err)
	}
	id := &Identity{Cluster: nc.Cluster.Name(), Node: name, Roles: nc.Node.Roles, Init: nc.Node.Init, Addresses: addrs}
	o.Logger.InfoContext(ctx, "ksboot agent started", "version", o.Version, "cluster", id.Cluster, "node", id.Node,
		"roles", strings.Join(id.Roles, ","), "init", id.Init, "addresses", strings.Join(addrs, ","))
	fmt.Fprintf(o.Console, "ksboot %s: node %s, role %s, cluster %s, addresses %s\n",
		o.Version, id.Node, strings.Join(id.Roles, "+"), id.Cluster, strings.Join(addrs, " "))
	st := &state.Status{Version: o.Version, Cluster: id.Cluster, Node: id.Node, Roles: id.Roles, Init: id.Init,
		Addresses: addrs, Phase: "started", Updated: o.Now().UTC()}
	if err := state.Write(o.Root, st); err != nil {
		return nil, err
	}
	return id, nil
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
