package certs

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// This file is the admin side (`ksboot certs check-expiration`, `ksboot certs renew`): it
// works with a kubeconfig alone, through the control planes' Nodes and their agents.

// controlPlaneLabel is the label kubeadm gives control-plane Nodes.
const controlPlaneLabel = "node-role.kubernetes.io/control-plane"

// NodeCerts is one control plane's report.
type NodeCerts struct {
	Node  string
	Certs []Cert
	// Problem says why there is no report (no agent has reported, or it cannot be read).
	Problem string
}

// Check reads every control plane's report, in name order.
func Check(ctx context.Context, cs kubernetes.Interface) ([]NodeCerts, error) {
	nodes, err := controlPlanes(ctx, cs)
	if err != nil {
		return nil, err
	}
	var out []NodeCerts
	for _, n := range nodes {
		nc := NodeCerts{Node: n.Name}
		r, ok := n.Annotations[ReportAnnotation]
		switch {
		case !ok:
			nc.Problem = "no report on the Node: is ksboot-agent.service running there? (it reports within a minute of joining, then hourly)"
		default:
			if nc.Certs, err = ParseReport(r); err != nil {
				nc.Problem = err.Error()
			}
		}
		out = append(out, nc)
	}
	return out, nil
}

func controlPlanes(ctx context.Context, cs kubernetes.Interface) ([]corev1.Node, error) {
	list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{LabelSelector: controlPlaneLabel})
	if err != nil {
		return nil, fmt.Errorf("listing control-plane Nodes: %w", err)
	}
	if len(list.Items) == 0 {
		return nil, fmt.Errorf("no Node has the label %s", controlPlaneLabel)
	}
	slices.SortFunc(list.Items, func(a, b corev1.Node) int { return strings.Compare(a.Name, b.Name) })
	return list.Items, nil
}

// WriteTable prints the reports as `kubeadm certs check-expiration` lays them out, one block
// per control plane.
func WriteTable(w io.Writer, reports []NodeCerts, now time.Time) {
	for i, r := range reports {
		if i > 0 {
			fmt.Fprintln(w)
		}
		if r.Problem != "" {
			fmt.Fprintf(w, "%s: %s\n", r.Node, r.Problem)
			continue
		}
		fmt.Fprintf(w, "%-26s %-26s %-16s %s\n", "NODE "+r.Node+": CERTIFICATE", "EXPIRES", "RESIDUAL TIME", "")
		for _, c := range r.Certs {
			kind := ""
			if c.CA {
				kind = "certificate authority"
			}
			fmt.Fprintf(w, "%-26s %-26s %-16s %s\n", c.Name, c.NotAfter.UTC().Format("Jan 02, 2006 15:04 MST"), residual(c.NotAfter.Sub(now)), kind)
		}
	}
}

// residual is kubeadm's "RESIDUAL TIME": 364d, 9y, or <invalid> once expired.
func residual(d time.Duration) string {
	switch days := int(d.Hours() / 24); {
	case d <= 0:
		return "<invalid>"
	case days >= 365*2:
		return fmt.Sprintf("%dy", days/365)
	case days >= 1:
		return fmt.Sprintf("%dd", days)
	default:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
}

// RenewOptionsCluster bounds `ksboot certs renew`.
type RenewOptionsCluster struct {
	// Wait bounds each control plane's renewal (a restart of its control-plane pods).
	Wait     time.Duration
	Interval time.Duration
	Progress io.Writer
	Now      func() time.Time
}

// RequestRenewal asks every control plane's agent, one at a time so that the API server stays
// available, to renew its certificates, and waits, bounded, for each to answer.
func RequestRenewal(ctx context.Context, cs kubernetes.Interface, o RenewOptionsCluster) ([]string, error) {
	if o.Interval == 0 {
		o.Interval = 5 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	nodes, err := controlPlanes(ctx, cs)
	if err != nil {
		return nil, err
	}
	var done []string
	for _, n := range nodes {
		// Unique per request: the agent answers by echoing it.
		asked := o.Now().UTC().Format(time.RFC3339Nano)
		patch := fmt.Sprintf(`{"metadata":{"annotations":{%q:%q}}}`, RenewRequestedAnnotation, asked)
		if _, err := cs.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			return done, fmt.Errorf("asking %s to renew: %w", n.Name, err)
		}
		fmt.Fprintf(o.Progress, "certs renew: asked %s's agent; waiting for it (at most %s)\n", n.Name, o.Wait)
		if err := waitRenewed(ctx, cs, n.Name, asked, o); err != nil {
			return done, err
		}
		fmt.Fprintf(o.Progress, "certs renew: %s renewed\n", n.Name)
		done = append(done, n.Name)
	}
	return done, nil
}

func waitRenewed(ctx context.Context, cs kubernetes.Interface, node, asked string, o RenewOptionsCluster) error {
	wctx, cancel := context.WithTimeout(ctx, o.Wait)
	defer cancel()
	tick := time.NewTicker(o.Interval)
	defer tick.Stop()
	last := "no answer yet"
	for {
		// The API server may be the one restarting: errors are part of waiting.
		n, err := cs.CoreV1().Nodes().Get(wctx, node, metav1.GetOptions{})
		switch {
		case err != nil:
			last = err.Error()
		case n.Annotations[RenewedAnnotation] == asked:
			return nil
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("%s did not renew its certificates within %s (last: %s): see journalctl -u ksboot-agent on it; the control planes after it were not asked", node, o.Wait, last)
		case <-tick.C:
		}
	}
}
