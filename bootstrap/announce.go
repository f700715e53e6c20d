package bootstrap

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/ksboot/ksboot/bootstrap/state"
	"github.com/ksboot/ksboot/bootstrap/workflow"
	"github.com/ksboot/ksboot/cluster"
	"github.com/ksboot/ksboot/discovery"
)

// PhaseJoined is announced once the kubeadm phase has finished, for `ksboot watch`. Joining
// control planes do not rely on it: they ask the cluster itself (package joinorder).
const PhaseJoined = "joined"

// announcedPhase is what a node announces for its status: the running phase, except that a
// finished kubeadm phase reads "joined".
func announcedPhase(st *state.Status) string {
	if st == nil {
		return "starting"
	}
	if st.Phase == "kubeadm" {
		for _, p := range st.Phases {
			if p.Name == "kubeadm" && p.Outcome == workflow.OutcomeDone {
				return PhaseJoined
			}
		}
	}
	if st.Phase == "" {
		return "starting"
	}
	return st.Phase
}

// Announce runs ksboot-announce.service: it announces this node over mDNS and keeps the
// announcement in step with status.json until ctx ends. Control planes add api=<address>:<port>
// once their kubeadm phase is done.
func Announce(ctx context.Context, o Options) error {
	o = o.withDefaults()
	nc, err := cluster.LoadNodeConfig(o.path(o.ConfigPath))
	if err != nil {
		return err
	}
	name, err := NodeName(nc, o.Root)
	if err != nil {
		return err
	}
	opts := discovery.OptionsFromNodeConfig(nc)
	opts.Logger = o.Logger
	opts.Interface = mdnsInterface(nc, name)
	a := discovery.AnnouncementFromNodeConfig(nc)
	a.Node = name
	st, err := state.Read(o.Root)
	if err != nil {
		o.Logger.Warn("cannot read status; announcing as starting", "error", err)
	}
	a.Phase = announcedPhase(st)
	// The network may still be coming up when the unit starts: retry announcing, bounded.
	var an *discovery.Announcer
	for attempt := 0; ; attempt++ {
		an, err = discovery.Announce(opts, a)
		if err == nil {
			break
		}
		if attempt >= 60 {
			return fmt.Errorf("announcing node %s: %w", name, err)
		}
		o.Logger.Warn("cannot announce yet; retrying in 5s", "error", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(5 * time.Second):
		}
	}
	defer an.Close()
	tick := time.NewTicker(3 * time.Second)
	defer tick.Stop()
	for {
		st, err := state.Read(o.Root)
		if err == nil && st != nil {
			an.SetPhase(announcedPhase(st))
			an.SetError(firstLine(st.Error))
			if st.Console != "" {
				if err := an.SetConsole(st.Console); err != nil {
					o.Logger.Warn("cannot announce the console address", "error", err)
				}
			}
			if nc.Node.IsControlPlane() && apiReady(st) {
				if err := an.SetAPI(apiAddress(nc, st)); err != nil {
					o.Logger.Warn("cannot announce the API address", "error", err)
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func apiReady(st *state.Status) bool {
	for _, p := range st.Phases {
		if p.Name == "kubeadm" && p.Outcome == workflow.OutcomeDone {
			return true
		}
	}
	return false
}

// apiAddress is where this control plane's API server listens: its static address, else its
// first address, at the endpoint port.
func apiAddress(nc *cluster.NodeConfig, st *state.Status) string {
	port := strconv.Itoa(nc.Cluster.Spec.ControlPlaneEndpoint.Port)
	if h, ok := nc.Cluster.Host(nc.Node.Name); ok && h.Address != "" {
		ip, _, _ := strings.Cut(h.Address, "/")
		return net.JoinHostPort(ip, port)
	}
	for _, a := range st.Addresses {
		ip, _, _ := strings.Cut(a, "/")
		if parsed := net.ParseIP(ip); parsed != nil && parsed.To4() != nil {
			return net.JoinHostPort(ip, port)
		}
	}
	return ""
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 120 {
		s = s[:120]
	}
	return s
}

// mdnsInterface picks the network interface for mDNS when the cluster file names none: the one
// holding the node's static address. hashicorp/mdns otherwise joins the multicast group on the
// routing table's interface, which fails on a segment without a default route.
func mdnsInterface(nc *cluster.NodeConfig, node string) string {
	if nc.Cluster.Spec.Discovery.Interface != "" {
		return nc.Cluster.Spec.Discovery.Interface
	}
	h, ok := nc.Cluster.Host(node)
	if !ok || h.Address == "" || nc.Node.Generic {
		return ""
	}
	want, _, _ := strings.Cut(h.Address, "/")
	ifaces, err := net.Interfaces()
	if err != nil {
		return ""
	}
	for _, ifc := range ifaces {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.String() == want {
				return ifc.Name
			}
		}
	}
	return ""
}
