package endpoint

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/ksboot/ksboot/cluster"
	"github.com/ksboot/ksboot/discovery"
)

// Options configure the discover phase.
type Options struct {
	Config *cluster.NodeConfig
	Logger *slog.Logger
	// Timeout bounds the whole wait for the control plane (default discovery.DefaultTimeout).
	Timeout time.Duration
	// ExistingTimeout bounds the init node's look for an API server that already answers.
	ExistingTimeout time.Duration
	// Interface is the network interface for mDNS (default: the cluster file's).
	Interface string
	// DryRun returns the configured endpoint without touching the network.
	DryRun bool
	// Progress, if set, is called after every query round (discovery.Options.Progress).
	Progress func(discovery.Progress)
}

// Result is what the node will use.
type Result struct {
	// Address is host:port of a verified API server; empty for an init node that found none.
	Address string
	// Existing is true when the init node found its cluster already running.
	Existing bool
	// Source says how it was found: "mdns", "static" or "none".
	Source string
}

// Resolve finds the API server this node should use.
func Resolve(ctx context.Context, o Options) (Result, error) {
	nc := o.Config
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.ExistingTimeout == 0 {
		o.ExistingTimeout = 20 * time.Second
	}
	opts := discovery.OptionsFromNodeConfig(nc)
	opts.Logger = o.Logger
	opts.Timeout = o.Timeout
	opts.Progress = o.Progress
	if o.Interface != "" {
		opts.Interface = o.Interface
	}
	static := StaticAddress(&nc.Cluster)
	if o.DryRun {
		if static == "" {
			static = net.JoinHostPort(nc.Cluster.Spec.ControlPlaneEndpoint.Domain, strconv.Itoa(nc.Cluster.Spec.ControlPlaneEndpoint.Port))
		}
		o.Logger.Info("dry run: not looking for the control plane", "would use", static)
		return Result{Address: static, Source: "dry-run", Existing: false}, nil
	}
	find := func(ctx context.Context, opts discovery.Options) (discovery.Endpoint, error) {
		if static != "" {
			return discovery.FindStaticWith(ctx, static, opts)
		}
		return discovery.Find(ctx, opts)
	}
	if nc.Node.Init {
		// A reinstalled first control plane must not start a second cluster: look briefly for one
		// that already answers with this cluster's CA.
		short := opts
		short.Timeout = o.ExistingTimeout
		ep, err := findExisting(ctx, &nc.Cluster, short)
		if err == nil {
			o.Logger.Warn("this cluster's API server already answers: joining it instead of running kubeadm init", "address", ep.Address)
			return Result{Address: ep.Address, Existing: true, Source: ep.Source}, nil
		}
		var conflict *discovery.ConflictError
		if errors.As(err, &conflict) {
			return Result{}, err
		}
		o.Logger.Info("no running API server of this cluster found; this node initialises it")
		return Result{Source: "none"}, nil
	}
	// Control planes join one at a time, in file order, whatever the discovery mode: the kubeadm
	// phase waits for the ones before this node (package joinorder), asking the cluster itself.
	ep, err := find(ctx, opts)
	if err != nil {
		return Result{}, err
	}
	return Result{Address: ep.Address, Source: ep.Source}, nil
}

// findExisting looks for a running API server of the cluster, for the init node: by mDNS, at
// the static endpoint when it is a separate load balancer or VIP, or, when static discovery
// points at the init node's own address (haproxy, which has no endpoint address), at every
// other control plane's address, since nothing runs at its own yet. With a single control plane
// and no endpoint address there is nowhere else to look.
func findExisting(ctx context.Context, c *cluster.Cluster, opts discovery.Options) (discovery.Endpoint, error) {
	static := StaticAddress(c)
	switch {
	case static == "":
		return discovery.Find(ctx, opts)
	case c.Spec.ControlPlaneEndpoint.Address != "":
		return discovery.FindStaticWith(ctx, static, opts)
	}
	others := OtherControlPlanes(c)
	if len(others) == 0 {
		return discovery.Endpoint{}, errors.New("no other control plane to ask")
	}
	// Each gets its share of the time; they are asked one after the other.
	opts.Timeout = max(opts.Timeout/time.Duration(len(others)), 2*time.Second)
	var errs []error
	for _, addr := range others {
		ep, err := discovery.FindStaticWith(ctx, addr, opts)
		if err == nil {
			return ep, nil
		}
		errs = append(errs, err)
	}
	return discovery.Endpoint{}, errors.Join(errs...)
}

// OtherControlPlanes lists host:port of the API servers of the control planes after the first
// one, at their static addresses (those without one are left out).
func OtherControlPlanes(c *cluster.Cluster) []string {
	port := strconv.Itoa(c.Spec.ControlPlaneEndpoint.Port)
	var out []string
	for _, name := range c.Spec.RoleGroups.ControlPlane {
		if name == c.InitNode() {
			continue
		}
		if h, ok := c.Host(name); ok && h.Address != "" {
			ip, _, _ := strings.Cut(h.Address, "/")
			out = append(out, net.JoinHostPort(ip, port))
		}
	}
	return out
}

// StaticAddress is host:port of the fixed endpoint when the cluster uses static discovery: the
// controlPlaneEndpoint address, or the single control plane's static address.
func StaticAddress(c *cluster.Cluster) string {
	if c.Spec.Discovery.Mode != cluster.DiscoveryStatic {
		return ""
	}
	port := strconv.Itoa(c.Spec.ControlPlaneEndpoint.Port)
	if a := c.Spec.ControlPlaneEndpoint.Address; a != "" {
		return net.JoinHostPort(a, port)
	}
	if h, ok := c.Host(c.InitNode()); ok && h.Address != "" {
		ip, _, _ := strings.Cut(h.Address, "/")
		return net.JoinHostPort(ip, port)
	}
	return ""
}

// Host returns the host part of an address.
func Host(hostport string) string {
	h, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return hostport
	}
	return h
}
