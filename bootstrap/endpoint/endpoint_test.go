package endpoint

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/ksboot/ksboot/cluster"
	"github.com/ksboot/ksboot/test/testpki"
)

func staticCluster(port int) *cluster.Cluster {
	c := cluster.Sample(cluster.SampleOptions{Name: "demo"})
	c.Spec.ControlPlaneEndpoint.Address = "127.0.0.1"
	c.Spec.ControlPlaneEndpoint.Port = port
	c.Spec.Discovery.Mode = cluster.DiscoveryStatic
	return c
}

func TestStaticWorkerFindsVerifiedEndpoint(t *testing.T) {
	s, err := cluster.NewSecrets()
	if err != nil {
		t.Fatal(err)
	}
	srv := testpki.APIServer(t, s)
	_, portS, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ := strconv.Atoi(portS)
	c := staticCluster(port)
	worker, err := cluster.NodeConfigFor(c, s, "node2")
	if err != nil {
		t.Fatal(err)
	}
	res, err := Resolve(context.Background(), Options{Config: worker, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if res.Address != srv.Listener.Addr().String() || res.Existing || res.Source != "static" {
		t.Errorf("result %+v", res)
	}
	// The init node behind a load balancer that already answers joins instead of initialising.
	initNode, _ := cluster.NodeConfigFor(c, s, "node1")
	res, err = Resolve(context.Background(), Options{Config: initNode, ExistingTimeout: 5 * time.Second})
	if err != nil || !res.Existing || res.Address == "" {
		t.Errorf("init node with a running cluster: %+v, %v", res, err)
	}
	// A seed of another cluster never accepts this API server.
	other, _ := cluster.NewSecrets()
	foreign, _ := cluster.NodeConfigFor(c, other, "node2")
	if _, err := Resolve(context.Background(), Options{Config: foreign, Timeout: 2 * time.Second}); err == nil {
		t.Error("a worker of another cluster accepted this API server")
	}
	initForeign, _ := cluster.NodeConfigFor(c, other, "node1")
	res, err = Resolve(context.Background(), Options{Config: initForeign, ExistingTimeout: 2 * time.Second})
	if err != nil || res.Existing {
		t.Errorf("an init node took another cluster's API server for its own: %+v, %v", res, err)
	}
}

func TestDryRunAndStaticAddress(t *testing.T) {
	s, _ := cluster.NewSecrets()
	c := cluster.Sample(cluster.SampleOptions{})
	nc, _ := cluster.NodeConfigFor(c, s, "node2")
	res, err := Resolve(context.Background(), Options{Config: nc, DryRun: true})
	if err != nil || res.Address != "lb.kubesphere.local:6443" {
		t.Errorf("dry run: %+v %v", res, err)
	}
	c.Spec.Discovery.Mode = cluster.DiscoveryStatic
	if got := StaticAddress(c); got != "192.168.0.11:6443" {
		t.Errorf("static address of a single control plane: %q", got)
	}
	// With haproxy there is no endpoint address: static discovery joins through the first
	// control plane; kube-vip's VIP is the endpoint address.
	c.Spec.RoleGroups.ControlPlane = []string{"node1", "node2", "node3"}
	c.Spec.ControlPlaneEndpoint.InternalLoadbalancer = cluster.InternalLBHAProxy
	if got := StaticAddress(c); got != "192.168.0.11:6443" {
		t.Errorf("static address with haproxy: %q", got)
	}
	c.Spec.ControlPlaneEndpoint.InternalLoadbalancer = cluster.InternalLBKubeVIP
	c.Spec.ControlPlaneEndpoint.Address = "192.168.0.100"
	if got := StaticAddress(c); got != "192.168.0.100:6443" {
		t.Errorf("static address with kube-vip: %q", got)
	}
}

// TestReinstalledInitNodeWithInternalLB: with static discovery behind kube-vip (the VIP is the
// endpoint) or haproxy (no endpoint address: the others are asked at their own addresses), a
// reinstalled first control plane finds its running cluster and joins it instead of running
// kubeadm init, and never takes another cluster's API server for its own. A fresh cluster, with
// nothing answering, is initialised.
func TestReinstalledInitNodeWithInternalLB(t *testing.T) {
	s, err := cluster.NewSecrets()
	if err != nil {
		t.Fatal(err)
	}
	srv := testpki.APIServer(t, s)
	_, portS, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ := strconv.Atoi(portS)
	haCluster := func(lb string) *cluster.Cluster {
		c := cluster.Sample(cluster.SampleOptions{Name: "demo"})
		c.Spec.RoleGroups.ControlPlane = []string{"node1", "node2", "node3"}
		c.Spec.RoleGroups.Etcd = []string{"node1", "node2", "node3"}
		c.Spec.RoleGroups.Worker = nil
		c.Spec.ControlPlaneEndpoint.InternalLoadbalancer = lb
		c.Spec.ControlPlaneEndpoint.Port = port
		c.Spec.Discovery.Mode = cluster.DiscoveryStatic
		// Loopback only: node1 (the one reinstalled) is never asked; node2 answers, on
		// 127.0.0.1, and nothing listens on node3's 127.0.0.2.
		c.Spec.Hosts[1].Address, c.Spec.Hosts[2].Address = "127.0.0.1/8", "127.0.0.2/8"
		if lb == cluster.InternalLBKubeVIP {
			c.Spec.ControlPlaneEndpoint.Address = "127.0.0.1" // the VIP, held by node2's kube-vip
		}
		return c
	}
	for _, lb := range []string{cluster.InternalLBKubeVIP, cluster.InternalLBHAProxy} {
		t.Run(lb, func(t *testing.T) {
			c := haCluster(lb)
			initNode, err := cluster.NodeConfigFor(c, s, "node1")
			if err != nil {
				t.Fatal(err)
			}
			res, err := Resolve(context.Background(), Options{Config: initNode, ExistingTimeout: 10 * time.Second})
			if err != nil || !res.Existing || res.Address != net.JoinHostPort("127.0.0.1", portS) {
				t.Errorf("reinstalled first control plane: %+v, %v; want it to join the cluster at 127.0.0.1:%s", res, err, portS)
			}
			other, _ := cluster.NewSecrets()
			foreign, _ := cluster.NodeConfigFor(c, other, "node1")
			res, err = Resolve(context.Background(), Options{Config: foreign, ExistingTimeout: 2 * time.Second})
			if err != nil || res.Existing {
				t.Errorf("took another cluster's API server for its own: %+v, %v", res, err)
			}
			// A fresh cluster: nothing answers anywhere, so node1 initialises it.
			closed := haCluster(lb)
			closed.Spec.Hosts[1].Address = "127.0.0.3/8"
			if lb == cluster.InternalLBKubeVIP {
				closed.Spec.ControlPlaneEndpoint.Address = "127.0.0.3"
			}
			fresh, _ := cluster.NodeConfigFor(closed, s, "node1")
			res, err = Resolve(context.Background(), Options{Config: fresh, ExistingTimeout: 2 * time.Second})
			if err != nil || res.Existing || res.Source != "none" {
				t.Errorf("fresh cluster: %+v, %v; want node1 to initialise it", res, err)
			}
		})
	}
}
