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
