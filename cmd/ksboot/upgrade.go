package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"

	"github.com/ksboot/ksboot/bootstrap/kubeadm"
	"github.com/ksboot/ksboot/bootstrap/upgrade"
)

func newUpgradeCmd(s *streams) *cobra.Command {
	var kubeconfig, to string
	var wait, interval time.Duration
	cmd := &cobra.Command{
		Use:   "upgrade --to VERSION",
		Short: "Upgrade the cluster's Kubernetes by one minor (or patch), node by node, through each node's agent",
		Long: `Record an upgrade to VERSION in the cluster (ConfigMap kube-system/ksboot-upgrade). Each
node's ksboot-agent.service imports VERSION's images at once and then upgrades itself when its
turn comes, one node at a time: the first control plane runs kubeadm upgrade apply, the other
control planes kubeadm upgrade node, then the workers; each gets kubeadm, kubelet and kubectl of
VERSION from its artifact source (mirror, or an offline bundle of VERSION), is drained, restarts
its kubelet and is uncordoned. VERSION must be in ksboot's version matrix, at the control plane's
minor or the next one; no kubelet may be newer, nor more than one minor older.

With --wait the command follows the nodes until all are done, one has failed, or the wait ends;
"ksboot upgrade status" shows the same table at any time.`,
		Example: `  ksboot upgrade --to v1.27.16 --kubeconfig admin.conf --wait 90m
  ksboot upgrade status --kubeconfig admin.conf`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to == "" {
				return fmt.Errorf("--to VERSION is required (e.g. --to v1.27.16)")
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runUpgrade(ctx, s, kubeconfig, to, wait, interval)
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of the cluster (default: $KUBECONFIG, else ~/.kube/config)")
	f.StringVar(&to, "to", "", "the Kubernetes release to upgrade to")
	f.DurationVar(&wait, "wait", 0, "follow the upgrade at most this long (0: record it and return)")
	f.DurationVar(&interval, "interval", 15*time.Second, "with --wait: time between reads")
	status := &cobra.Command{
		Use:     "status",
		Short:   "Show the requested upgrade and each node's version and step",
		Example: `  ksboot upgrade status --kubeconfig admin.conf`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cs, err := kubeadm.ClientFromKubeconfig(kubeconfig)
			if err != nil {
				return err
			}
			plan, nodes, err := upgrade.State(cmd.Context(), cs)
			if err != nil {
				return err
			}
			upgrade.WriteTable(s.out, plan, nodes, time.Now())
			return nil
		},
	}
	status.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of the cluster (default: $KUBECONFIG, else ~/.kube/config)")
	cmd.AddCommand(status)
	return cmd
}

func runUpgrade(ctx context.Context, s *streams, kubeconfig, to string, wait, interval time.Duration) error {
	if wait < 0 || interval <= 0 {
		return fmt.Errorf("--wait %s, --interval %s: --wait must not be negative (0 records the upgrade and returns) and --interval must be positive", wait, interval)
	}
	cs, err := kubeadm.ClientFromKubeconfig(kubeconfig)
	if err != nil {
		return err
	}
	plan, err := upgrade.Request(ctx, cs, upgrade.RequestOptions{To: to})
	if err != nil {
		return err
	}
	fmt.Fprintf(s.err, "upgrade %s -> %s recorded; order: %v\n", plan.From, plan.Target, plan.Order)
	if wait == 0 {
		fmt.Fprintln(s.err, "each node's agent takes its turn; follow with: ksboot upgrade status")
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if err := followUpgrade(ctx, s, cs, interval, true); err != nil {
		return err
	}
	if ctx.Err() != nil {
		return &exitError{code: exitFailure, err: fmt.Errorf("the upgrade to %s did not finish within %s (ksboot upgrade status shows where it is)", to, wait)}
	}
	return nil
}

// followUpgrade prints the upgrade table whenever it changes until ctx ends; with untilDone it
// returns when every node is done or one failed.
func followUpgrade(ctx context.Context, s *streams, cs kubernetes.Interface, interval time.Duration, untilDone bool) error {
	last := ""
	for {
		p, nodes, err := upgrade.State(ctx, cs)
		if err == nil {
			var b strings.Builder
			upgrade.WriteTable(&b, p, nodes, time.Now())
			if table := b.String(); table != last {
				fmt.Fprint(s.out, table)
				last = table
			}
		}
		if err == nil && p != nil && untilDone {
			if upgrade.Finished(p, nodes) {
				fmt.Fprintf(s.err, "every node runs %s\n", p.Target)
				return nil
			}
			if n, failed := upgrade.Failed(p, nodes); failed {
				return &exitError{code: exitFailure, err: fmt.Errorf("node %s failed its upgrade step: %s (it tries again every 5 minutes; the nodes after it wait)", n.Node, n.Status.Detail)}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}
