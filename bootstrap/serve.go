package bootstrap

import (
	"context"
	"errors"
	"fmt"
	"os"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ksboot/ksboot/bootstrap/certs"
	"github.com/ksboot/ksboot/bootstrap/follow"
	"github.com/ksboot/ksboot/bootstrap/host"
	"github.com/ksboot/ksboot/bootstrap/install"
	"github.com/ksboot/ksboot/bootstrap/kubeadm"
	"github.com/ksboot/ksboot/bootstrap/preflight"
	"github.com/ksboot/ksboot/bootstrap/reset"
	"github.com/ksboot/ksboot/bootstrap/upgrade"
	"github.com/ksboot/ksboot/cluster"
)

// Serve runs ksboot-agent.service: it follows this node's Node with the kubelet's credentials
// (kubelet.conf, written when the node joins; until then it waits), resets the machine when
// `ksboot node delete` asks for it, and on a control plane reports its kubeadm certificates and
// renews them when asked or due (packages follow, certs). It returns nil when ctx ends or after
// a reset.
func Serve(ctx context.Context, o Options) error {
	o = o.withDefaults()
	nc, err := cluster.LoadNodeConfig(o.path(o.ConfigPath))
	if err != nil {
		return err
	}
	name, err := NodeName(nc, o.Root)
	if err != nil {
		return err
	}
	kubeconfig := o.path(kubeadm.KubeletConf)
	fo := follow.Options{
		Node:   name,
		Logger: o.Logger,
		Client: func() (kubernetes.Interface, error) {
			if _, err := os.Stat(kubeconfig); err != nil {
				return nil, errors.New(kubeconfig + " is not there yet (the kubelet's credentials, written when the node joins)")
			}
			return kubeadm.ClientFromKubeconfig(kubeconfig)
		},
		Reset: func(ctx context.Context) error {
			ro := reset.Options{Root: host.Root(o.Root), Exec: o.Exec, Console: o.Console, Stream: o.Console, Logger: o.Logger}
			if ro.Exec == nil {
				ro.Exec = host.Real{}
			}
			_, err := reset.Run(ctx, ro)
			return err
		},
	}
	if nc.Node.IsControlPlane() {
		root := host.Root(o.Root)
		fo.ReadCerts = func() ([]certs.Cert, error) { return certs.Read(root) }
		fo.RenewCerts = func(ctx context.Context) error {
			return certs.Renew(ctx, certs.RenewOptions{Root: root, Exec: o.Exec, Console: o.Console, Node: name})
		}
	}
	fo.Upgrade = upgradeFollower(o, nc, name)
	err = follow.Follow(ctx, fo)
	if errors.Is(err, follow.ErrReset) {
		fmt.Fprintln(o.Console, "ksboot: reset done on request of ksboot node delete: reboot the machine with a seed attached to bootstrap it again")
		return nil
	}
	return err
}

// upgradeFollower is this node's part in a rolling upgrade (package upgrade): the new release's
// binaries and images come from the node's artifact source, as at install (package install).
func upgradeFollower(o Options, nc *cluster.NodeConfig, name string) func(context.Context, kubernetes.Interface, *corev1.Node) error {
	root := host.Root(o.Root)
	// installOptions are the install phase's options with the node config at another release.
	installOptions := func(ctx context.Context, version string) (install.Options, error) {
		target := *nc
		target.Cluster.Spec.Kubernetes.Version = version
		opts := install.Options{Root: root, Exec: o.Exec, Config: &target, Logger: o.Logger, Console: o.Console, HTTP: o.HTTP}
		var err error
		if opts.OS, err = host.ReadOS(root); err != nil {
			return opts, err
		}
		opts.Arch, err = preflight.Arch(ctx, o.Exec)
		return opts, err
	}
	uo := upgrade.NodeOptions{
		Node: name, ControlPlane: nc.Node.IsControlPlane(), Exec: o.Exec, Logger: o.Logger, Stream: o.Console,
		IgnorePreflight: kubeadm.IgnoredPreflightChecks(nc.Cluster.Spec.Preflight.WarnOnly),
		Images: func(ctx context.Context, version string) error {
			opts, err := installOptions(ctx, version)
			if err != nil {
				return err
			}
			return install.ImportImages(ctx, opts)
		},
		Install: func(ctx context.Context, version string) error {
			opts, err := installOptions(ctx, version)
			if err != nil {
				return err
			}
			if err := install.Binaries(ctx, opts); err != nil {
				return err
			}
			return install.ImportImages(ctx, opts)
		},
	}
	if len(nc.Cluster.Spec.Kubernetes.Patches) > 0 {
		uo.PatchesDir = kubeadm.PatchesDir
	}
	if uo.ControlPlane {
		adminConf := o.path(kubeadm.AdminConf)
		uo.Admin = func() (kubernetes.Interface, error) { return kubeadm.ClientFromKubeconfig(adminConf) }
	}
	return func(ctx context.Context, cs kubernetes.Interface, _ *corev1.Node) error {
		return upgrade.Follow(ctx, cs, uo)
	}
}
