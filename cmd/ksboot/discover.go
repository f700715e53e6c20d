package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/ksboot/ksboot/cluster"
	"github.com/ksboot/ksboot/discovery"
)

type discoverOptions struct {
	config     string
	file       string
	secretsDir string
	timeout    time.Duration
	iface      string
}

func newDiscoverCmd(s *streams) *cobra.Command {
	o := &discoverOptions{}
	cmd := &cobra.Command{
		Use:   "discover",
		Short: "Find and verify this cluster's control plane from this machine",
		Long: `Answer "can this machine see my control plane?": look for the cluster's API server the way a
node does (mDNS announcements, or the static controlPlaneEndpoint), connect to it with TLS and
check that its certificate chains to the cluster CA. Prints the verified host:port, or why there
is none (nothing seen, a foreign CA, a conflict) with exit code 1.`,
		Example: `  ksboot discover --config /etc/ksboot/node.yaml
  ksboot discover -f cluster.yaml --timeout 1m`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDiscover(cmd.Context(), s, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.config, "config", "", "node config (/etc/ksboot/node.yaml on a node)")
	f.StringVarP(&o.file, "filename", "f", "", "cluster file (its secrets directory provides the CA)")
	f.StringVar(&o.secretsDir, "secrets", "", "secrets directory (default: <cluster name>-secrets beside the cluster file)")
	f.DurationVar(&o.timeout, "timeout", 30*time.Second, "how long to look")
	f.StringVar(&o.iface, "interface", "", "network interface for mDNS (default: the cluster file's, else all)")
	return cmd
}

// discoveryTarget is what discover and watch need to know about the cluster.
type discoveryTarget struct {
	opts     discovery.Options
	static   string // host:port when the cluster uses a static endpoint
	clusterN string
}

func loadDiscoveryTarget(config, file, secretsDir string) (*discoveryTarget, error) {
	switch {
	case config != "" && file != "":
		return nil, errors.New("give --config or -f, not both")
	case config != "":
		nc, err := cluster.LoadNodeConfig(config)
		if err != nil {
			return nil, err
		}
		return targetFor(&nc.Cluster, discovery.OptionsFromNodeConfig(nc)), nil
	case file != "":
		c, _, err := cluster.Load(file)
		if err != nil {
			return nil, err
		}
		if secretsDir == "" {
			secretsDir = cluster.SecretsDir(file, c.Name())
		}
		sec, err := cluster.ReadSecrets(secretsDir)
		if err != nil {
			return nil, fmt.Errorf("the cluster CA is needed to verify the control plane: %w", err)
		}
		pin, err := sec.CAPin()
		if err != nil {
			return nil, err
		}
		opts := discovery.Options{Cluster: c.Name(), ID: cluster.ClusterID(pin), CAPEM: sec.CACert, Pin: pin,
			Interface: c.Spec.Discovery.Interface, IPv6: c.Spec.Discovery.IPv6}
		return targetFor(c, opts), nil
	}
	return nil, errors.New("give --config (a node config) or -f (a cluster file)")
}

func targetFor(c *cluster.Cluster, opts discovery.Options) *discoveryTarget {
	t := &discoveryTarget{opts: opts, clusterN: c.Name()}
	if c.Spec.Discovery.Mode == cluster.DiscoveryStatic {
		addr := c.Spec.ControlPlaneEndpoint.Address
		if addr == "" {
			if h, ok := c.Host(c.InitNode()); ok {
				if p, err := parsePrefixAddr(h.Address); err == nil {
					addr = p
				}
			}
		}
		t.static = net.JoinHostPort(addr, strconv.Itoa(c.Spec.ControlPlaneEndpoint.Port))
	}
	return t
}

func parsePrefixAddr(cidr string) (string, error) {
	ip, _, err := net.ParseCIDR(cidr)
	if err != nil {
		return "", err
	}
	return ip.String(), nil
}

func runDiscover(ctx context.Context, s *streams, o *discoverOptions) error {
	t, err := loadDiscoveryTarget(o.config, o.file, o.secretsDir)
	if err != nil {
		return err
	}
	if o.iface != "" {
		t.opts.Interface = o.iface
	}
	t.opts.Timeout = o.timeout
	var ep discovery.Endpoint
	if t.static != "" {
		ep, err = discovery.FindStaticWith(ctx, t.static, t.opts)
	} else {
		ep, err = discovery.Find(ctx, t.opts)
	}
	if err != nil {
		return &exitError{code: exitFailure, err: fmt.Errorf("no verified control plane for cluster %q: %w", t.clusterN, err)}
	}
	fmt.Fprintln(s.out, ep.Address)
	how := "static endpoint"
	if ep.Source == "mdns" {
		how = "announced by " + ep.Node
	}
	fmt.Fprintf(s.err, "verified: %s (%s), certificate %q chains to the cluster CA %s\n", ep.Address, how, ep.Subject, ep.CAPin)
	return nil
}
