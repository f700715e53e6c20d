package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ksboot/ksboot/bootstrap/kubeadm"
	"github.com/ksboot/ksboot/cluster"
)

func newTokenCmd(s *streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Manage the cluster's bootstrap token (the one seeds join with)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newTokenRotateCmd(s))
	return cmd
}

type tokenRotateOptions struct {
	file       string
	secretsDir string
	kubeconfig string
	ttl        time.Duration
	wait       time.Duration
}

func newTokenRotateCmd(s *streams) *cobra.Command {
	o := &tokenRotateOptions{}
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Replace the bootstrap token: seeds built afterwards join, seeds built before are refused",
		Long: `Replace the cluster's bootstrap token, the credential every seed joins with. The new
token is created in the cluster (kube-system/bootstrap-token-<id>, as kubeadm makes it), then
ksboot waits until kube-controller-manager has signed kube-public/cluster-info for it (joins
need that signature), writes it into the secrets directory, and only then deletes the old
token. Seeds built from then on carry the new token; seeds built before, of any role, are
refused: rebuild the seeds you still mean to boot. Nodes that have joined are not affected.

If a step fails, the old token stays valid and the error says which tokens the cluster and the
secrets directory hold; running the command again is safe. Only token IDs are printed.

By default the new token never expires, like the token kubeadm init creates from the seed, so
seeds can be booted at any time. With --ttl it expires (kube-controller-manager then deletes it)
and seeds built with it stop working at that time, until the next rotation.`,
		Example: `  ksboot token rotate -f cluster.yaml --kubeconfig admin.conf
  ksboot token rotate -f cluster.yaml --kubeconfig admin.conf --ttl 720h   # seeds valid for 30 days`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runTokenRotate(ctx, s, o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.file, "filename", "f", "", "cluster file (its secrets directory holds the token)")
	f.StringVar(&o.secretsDir, "secrets", "", "secrets directory (default: <cluster name>-secrets beside the cluster file)")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig of the cluster, e.g. a copy of the first control plane's /etc/kubernetes/admin.conf (default: $KUBECONFIG, else ~/.kube/config)")
	f.DurationVar(&o.ttl, "ttl", 0, "lifetime of the new token; 0 never expires")
	f.DurationVar(&o.wait, "wait", kubeadm.DefaultSignatureWait, "how long to wait for kube-controller-manager to sign cluster-info for the new token")
	return cmd
}

func runTokenRotate(ctx context.Context, s *streams, o *tokenRotateOptions) error {
	if o.file == "" && o.secretsDir == "" {
		return errors.New("give the cluster file (-f) or the secrets directory (--secrets)")
	}
	if o.ttl < 0 {
		return fmt.Errorf("--ttl %s is negative", o.ttl)
	}
	dir := o.secretsDir
	if dir == "" {
		c, ps, err := cluster.Load(o.file)
		printProblems(s.err, ps)
		if err != nil {
			return err
		}
		dir = cluster.SecretsDir(o.file, c.Name())
	}
	cs, err := kubeadm.ClientFromKubeconfig(o.kubeconfig)
	if err != nil {
		return err
	}
	res, err := kubeadm.RotateToken(ctx, cs, kubeadm.RotateOptions{
		SecretsDir: dir, TTL: o.ttl, SignatureWait: o.wait, Progress: s.err,
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(s.out, "bootstrap token rotated: %s replaces %s (%s)\n", res.NewID, res.OldID, res.Expiry())
	switch {
	case res.OldDeleted:
		fmt.Fprintf(s.out, "token %s is deleted: seeds built before now are refused; rebuild the seeds you still mean to boot (ksboot build-seed)\n", res.OldID)
	default:
		fmt.Fprintf(s.out, "token %s was not in the cluster any more; rebuild the seeds you still mean to boot (ksboot build-seed)\n", res.OldID)
	}
	for _, id := range res.Stale {
		fmt.Fprintf(s.out, "also deleted token %s, left by an interrupted rotation\n", id)
	}
	return nil
}
