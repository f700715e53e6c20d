package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ksboot/ksboot/bootstrap/joinorder"
	"github.com/ksboot/ksboot/bootstrap/kubeadm"
	"github.com/ksboot/ksboot/bootstrap/nodedelete"
	"github.com/ksboot/ksboot/cluster"
)

func newNodeCmd(s *streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Day-two operations on the cluster's nodes",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newNodeDeleteCmd(s))
	return cmd
}

type nodeDeleteOptions struct {
	file, secretsDir, kubeconfig string
	drainTimeout, resetWait      time.Duration
	etcdEndpoints                []string
}

// etcdCredentialsValidFor bounds the in-memory etcd client certificate node delete mints.
const etcdCredentialsValidFor = time.Hour

func newNodeDeleteCmd(s *streams) *cobra.Command {
	o := &nodeDeleteOptions{}
	cmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Remove a node from the cluster: cordon, drain, reset its machine, delete the Node and its etcd member",
		Long: `Remove a node as kk delete node does, without SSH:
  1. cordon it and drain it through the eviction API, as kubectl drain --force --ignore-daemonsets
     --delete-emptydir-data does (bounded by --drain-timeout; pods that do not leave are named,
     with the PodDisruptionBudgets that hold them);
  2. ask its machine to reset itself: the request is an annotation on its Node, which the node's
     ksboot-agent.service follows; it acknowledges and runs ksboot agent reset (bounded by
     --reset-wait; a Node that is not Ready is not asked, its machine is presumed gone);
  3. delete the Node;
  4. for a control plane, remove its etcd member if kubeadm reset on the machine has not
     already done so. That needs the cluster's etcd CA: give the cluster file (-f) or its
     secrets directory (--secrets); the client certificate is made in memory and never written.
The cluster's only control plane is refused. A step that fails says what state the node is in;
running the command again carries on. Afterwards the machine can boot a seed again.`,
		Example: `  ksboot node delete worker-3f9a1c2b7d --kubeconfig admin.conf
  ksboot node delete cp3 --kubeconfig admin.conf -f cluster.yaml     # a control plane: etcd member too`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runNodeDelete(ctx, s, o, args[0])
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.file, "filename", "f", "", "cluster file: its secrets directory holds the etcd CA (control planes)")
	f.StringVar(&o.secretsDir, "secrets", "", "secrets directory (default: <cluster name>-secrets beside the cluster file)")
	f.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig of the cluster, e.g. a copy of a control plane's /etc/kubernetes/admin.conf (default: $KUBECONFIG, else ~/.kube/config)")
	f.DurationVar(&o.drainTimeout, "drain-timeout", nodedelete.DefaultDrainTimeout, "how long the drain may take")
	f.DurationVar(&o.resetWait, "reset-wait", nodedelete.DefaultResetWait, "how long to wait for the node's agent to take up the reset")
	f.StringSliceVar(&o.etcdEndpoints, "etcd-endpoints", nil, "etcd client URLs (default: https://<InternalIP>:2379 of the other control planes)")
	return cmd
}

func runNodeDelete(ctx context.Context, s *streams, o *nodeDeleteOptions, name string) error {
	if o.drainTimeout <= 0 || o.resetWait <= 0 {
		return errors.New("--drain-timeout and --reset-wait must be positive")
	}
	etcdTLS, err := nodeDeleteEtcdTLS(s, o)
	if err != nil {
		return err
	}
	cs, err := kubeadm.ClientFromKubeconfig(o.kubeconfig)
	if err != nil {
		return err
	}
	res, err := nodedelete.Delete(ctx, nodedelete.Options{
		Client: cs, Node: name, DrainTimeout: o.drainTimeout, GracePeriod: -1, ResetWait: o.resetWait,
		EtcdTLS: etcdTLS, EtcdEndpoints: o.etcdEndpoints, Progress: s.err,
	})
	if err != nil {
		return err
	}
	switch {
	case !res.NodeDeleted:
		fmt.Fprintf(s.out, "node %s: no Node in the cluster", name)
	case res.ResetAcknowledged:
		fmt.Fprintf(s.out, "node %s deleted; its machine is resetting itself: reboot it with a seed attached to bootstrap it again", name)
	default:
		fmt.Fprintf(s.out, "node %s deleted; its machine was not asked to reset (%s): run `ksboot agent reset --yes` there before it boots a seed again", name, res.ResetSkipped)
	}
	if res.EtcdMember != "" {
		fmt.Fprintf(s.out, "; etcd member: %s", res.EtcdMember)
	}
	fmt.Fprintln(s.out)
	return nil
}

// nodeDeleteEtcdTLS mints the etcd client credentials from the secrets directory, when one is
// given.
func nodeDeleteEtcdTLS(s *streams, o *nodeDeleteOptions) (*tls.Config, error) {
	dir := o.secretsDir
	if dir == "" && o.file != "" {
		c, ps, err := cluster.Load(o.file)
		printProblems(s.err, ps)
		if err != nil {
			return nil, err
		}
		dir = cluster.SecretsDir(o.file, c.Name())
	}
	if dir == "" {
		return nil, nil
	}
	sec, err := cluster.ReadSecrets(dir)
	if err != nil {
		return nil, err
	}
	return joinorder.EtcdClientTLS(string(sec.EtcdCACert), string(sec.EtcdCAKey), time.Now(), etcdCredentialsValidFor)
}
