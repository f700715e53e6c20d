package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ksboot/ksboot/bootstrap/certs"
	"github.com/ksboot/ksboot/bootstrap/kubeadm"
)

func newCertsCmd(s *streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "The control planes' kubeadm certificates: expiry and renewal, through each node's agent",
		Long: `Every control plane's ksboot-agent.service reads the certificates kubeadm manages on it
(/etc/kubernetes/pki and the client certificates in its kubeconfig files), reports them on its
Node hourly, and renews them by itself when one has fewer than 30 days left, as KubeKey's
auto-renew timer does. These commands read the reports and ask for a renewal at once; they need
only a kubeconfig.`,
		Args: cobra.NoArgs,
	}
	var kubeconfig string
	check := &cobra.Command{
		Use:     "check-expiration",
		Short:   "Show when each control plane's certificates expire",
		Example: `  ksboot certs check-expiration --kubeconfig admin.conf`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cs, err := kubeadm.ClientFromKubeconfig(kubeconfig)
			if err != nil {
				return err
			}
			reports, err := certs.Check(cmd.Context(), cs)
			if err != nil {
				return err
			}
			certs.WriteTable(s.out, reports, time.Now())
			return nil
		},
	}
	check.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of the cluster (default: $KUBECONFIG, else ~/.kube/config)")
	var wait time.Duration
	renew := &cobra.Command{
		Use:   "renew",
		Short: "Renew every control plane's certificates now, one control plane at a time",
		Long: `Ask each control plane's agent in turn to run kubeadm certs renew all and restart its
control-plane pods, waiting (at most --wait each) until it has, so that the other control planes
keep the API available. A control plane that does not answer stops the command; the ones after
it are not asked.`,
		Example: `  ksboot certs renew --kubeconfig admin.conf`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runCertsRenew(ctx, s, kubeconfig, wait)
		},
	}
	renew.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of the cluster (default: $KUBECONFIG, else ~/.kube/config)")
	renew.Flags().DurationVar(&wait, "wait", 15*time.Minute, "how long each control plane may take")
	cmd.AddCommand(check, renew)
	return cmd
}

func runCertsRenew(ctx context.Context, s *streams, kubeconfig string, wait time.Duration) error {
	if wait <= 0 {
		return fmt.Errorf("--wait %s: must be positive", wait)
	}
	cs, err := kubeadm.ClientFromKubeconfig(kubeconfig)
	if err != nil {
		return err
	}
	done, err := certs.RequestRenewal(ctx, cs, certs.RenewOptionsCluster{Wait: wait, Progress: s.err})
	if err != nil {
		return err
	}
	fmt.Fprintf(s.out, "certificates renewed on %d control planes: %v; admin.conf on them holds a new client certificate (copy it again if you use one)\n", len(done), done)
	return nil
}
