package kubeadm

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/ksboot/ksboot/bootstrap/host"
	"github.com/ksboot/ksboot/bootstrap/joinorder"
)

// EtcdMemberConfigPath is the kubeadm configuration that starts a stranded etcd member: this
// node's init-style configuration with etcd told to join the existing cluster. It holds the
// bootstrap token like ConfigPath.
const EtcdMemberConfigPath = "/etc/ksboot/kubeadm-etcd-member.yaml"

// etcdMemberStartTimeout bounds the wait for a stranded member's etcd to start;
// etcdMemberPoll is how often it asks.
const (
	etcdMemberStartTimeout = 5 * time.Minute
	etcdMemberPoll         = 10 * time.Second
)

// EtcdMembers is what a control-plane join asks of the cluster's etcd after kubeadm join failed
// (bootstrap wires it to package joinorder, which holds the client certificates).
type EtcdMembers struct {
	// Stranded returns this node's etcd member if kubeadm added it and its etcd never started.
	Stranded func(context.Context) (*joinorder.StrandedMember, error)
	// Remove removes a member by ID.
	Remove func(context.Context, uint64) error
}

// finishArgs run what is left of a control plane's kubeadm join once its etcd member is in the
// cluster and its etcd runs here: the kubelet of the failed attempt still runs, so the phases
// up to kubelet-start are skipped; kubeadm's member add then finds the member ("peer URL
// exists") and goes on to wait for etcd and mark the node.
var finishArgs = []string{"join", "--config", ConfigPath, "--skip-phases", "preflight,control-plane-prepare,kubelet-start"}

// memberJoined says a failed control-plane join got as far as its etcd member: kubeadm writes
// the etcd manifest only after etcd accepted the member (the runner resets leftovers before
// the first attempt and after every failed one, so the manifest is this attempt's).
func memberJoined(o RunOptions) bool {
	return o.Params.Role == RoleControlPlane && !o.DryRun && o.Root.Exists(ManifestsDir+"/etcd.yaml")
}

// rescueEtcdMember runs after a failed control-plane join that wrote no etcd manifest, before
// kubeadm reset. A member kubeadm added whose etcd never started is removed while the cluster
// keeps a quorum without it; otherwise (the second member of a cluster: with it the cluster has
// no quorum, so it cannot be removed and no join can succeed) it is started here, as kubeadm
// would have, and it returns true: the rest of the join is to be finished without a reset.
func rescueEtcdMember(ctx context.Context, o RunOptions) bool {
	if o.Params.Role != RoleControlPlane || o.Etcd.Stranded == nil || o.DryRun {
		return false
	}
	s, err := o.Etcd.Stranded(ctx)
	if err != nil {
		o.Logger.Warn("cannot read etcd's member list after the failed join", "error", firstLineOf(err.Error()))
		return false
	}
	if s == nil {
		return false
	}
	fmt.Fprintf(o.Console, "ksboot: this node's %s\n", s)
	if s.Removable() {
		if err := o.Etcd.Remove(ctx, s.ID); err != nil {
			o.Logger.Warn("cannot remove this node's unstarted etcd member; kubeadm's next join may be refused", "member", fmt.Sprintf("%x", s.ID), "error", firstLineOf(err.Error()))
			return false
		}
		fmt.Fprintf(o.Console, "ksboot: removed etcd member %x; the next join adds it again\n", s.ID)
		return false
	}
	fmt.Fprintf(o.Console, "ksboot: without it etcd has no quorum, so it cannot be removed: starting it as kubeadm would have, then finishing the join\n")
	if err := startStrandedMember(ctx, o, s); err != nil {
		o.Logger.Warn("starting this node's stranded etcd member failed", "error", firstLineOf(err.Error()))
		fmt.Fprintf(o.Console, "ksboot: starting etcd member %x failed: %s\n", s.ID, firstLineOf(err.Error()))
		return false
	}
	return true
}

// etcdMemberParams are a joining control plane's parameters as an init configuration whose
// etcd joins the existing cluster: `kubeadm init phase etcd local` then writes the manifest
// kubeadm's join would have.
func etcdMemberParams(p Params, initialCluster string) Params {
	p.Role = RoleInit
	p.EtcdArgs = append(slices.Clone(p.EtcdArgs), Arg{Name: "initial-cluster", Value: initialCluster},
		Arg{Name: "initial-cluster-state", Value: "existing"})
	return p
}

// startStrandedMember writes the etcd static pod of member s with kubeadm itself (init phase etcd
// local, with --initial-cluster and --initial-cluster-state=existing, the two flags by which
// kubeadm's join manifest differs), for the kubelet of the failed attempt to run, and waits
// until the member has started.
func startStrandedMember(ctx context.Context, o RunOptions, s *joinorder.StrandedMember) error {
	cfg, err := Render(etcdMemberParams(o.Params, s.InitialCluster))
	if err != nil {
		return err
	}
	if _, err := o.Root.WriteFile(EtcdMemberConfigPath, cfg, 0o600); err != nil {
		return err
	}
	if _, err := o.Exec.Run(ctx, host.Cmd{Name: "kubeadm", Args: []string{"init", "phase", "etcd", "local", "--config", EtcdMemberConfigPath}, Stream: o.Stream}); err != nil {
		return fmt.Errorf("kubeadm init phase etcd local: %w", err)
	}
	wctx, cancel := context.WithTimeout(ctx, etcdMemberStartTimeout)
	defer cancel()
	start := time.Now()
	for poll := 0; ; poll++ {
		left, err := o.Etcd.Stranded(wctx)
		if err == nil && left == nil {
			break
		}
		if wctx.Err() != nil || poll >= int(etcdMemberStartTimeout/etcdMemberPoll) {
			return fmt.Errorf("etcd member %x did not start within %s (see `crictl ps -a --name etcd` and that container's logs)", s.ID, etcdMemberStartTimeout)
		}
		fmt.Fprintf(o.Console, "ksboot: waiting for etcd member %x to start (%s of at most %s)\n", s.ID, time.Since(start).Round(time.Second), etcdMemberStartTimeout)
		if err := o.Sleep(wctx, etcdMemberPoll); err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
	}
	fmt.Fprintf(o.Console, "ksboot: etcd member %x started after %s\n", s.ID, time.Since(start).Round(time.Second))
	return nil
}
