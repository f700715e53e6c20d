package endpoint

import (
	"context"
	"errors"
	"fmt"
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
	// JoinedPhases are the announced phases that mean a control plane has joined.
	JoinedPhases []string
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
		// that already answers with this cluster's CA. The init node's own static address is not
		// asked (nothing runs there yet) unless the endpoint is a separate load balancer.
		if static == "" || nc.Cluster.Spec.ControlPlaneEndpoint.Address != "" {
			short := opts
			short.Timeout = o.ExistingTimeout
			ep, err := find(ctx, short)
			if err == nil {
				o.Logger.Warn("this cluster's API server already answers: joining it instead of running kubeadm init", "address", ep.Address)
				return Result{Address: ep.Address, Existing: true, Source: ep.Source}, nil
			}
			var conflict *discovery.ConflictError
			if errors.As(err, &conflict) {
				return Result{}, err
			}
			o.Logger.Info("no running API server of this cluster found; this node initialises it")
		}
		return Result{Source: "none"}, nil
	}
	// Control planes join one at a time: with mDNS each waits for the previous one to announce
	// that it joined. A static (cloud) network may carry no multicast, so there kubeadm's own
	// retries serialise concurrent joins.
	if idx := nc.Node.ControlPlaneIndex; idx > 0 && nc.Cluster.Spec.Discovery.Mode == cluster.DiscoveryMDNS {
		prev := nc.Cluster.Spec.RoleGroups.ControlPlane[idx-1]
		o.Logger.Info("waiting for the previous control plane to join", "node", prev)
		if _, err := discovery.WaitFor(ctx, opts, discovery.NodeInPhase(prev, o.JoinedPhases...)); err != nil {
			return Result{}, fmt.Errorf("control planes join one at a time in file order: %w", err)
		}
	}
	ep, err := find(ctx, opts)
	if err != nil {
		return Result{}, err
	}
	return Result{Address: ep.Address, Source: ep.Source}, nil
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
