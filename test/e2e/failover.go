package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/ksboot/ksboot/bootstrap/addons"
	"github.com/ksboot/ksboot/cluster"
	"github.com/ksboot/ksboot/versions"
)

// failoverPod is the pod the failover check creates: kubeadm's pause image, which every node
// imported from the bundle, so that nothing but the scheduler and the kubelet is judged.
const failoverPod = "e2e-failover"

// endpointKubeconfig writes an admin kubeconfig for the cluster's control-plane endpoint
// (spec.controlPlaneEndpoint.address: the VIP kube-vip holds), as a user outside the cluster
// reaches it. The API server certificates name that address (kubeadm's certSANs).
func (r *run) endpointKubeconfig(name string) string {
	return r.adminKubeconfig(name, "admin-endpoint.conf", func(c *cluster.Cluster) string {
		e := c.Spec.ControlPlaneEndpoint
		return "https://" + net.JoinHostPort(e.Address, strconv.Itoa(e.Port))
	})
}

// expectFailover switches off a control plane of the formed cluster (a power cut: nothing is
// handed over) and checks, within f.Within, that the API server answers through the
// control-plane endpoint and that a new pod is scheduled onto f.Schedule and runs there. Both
// need the survivors: kube-vip moves the VIP, etcd keeps its quorum with two of three members,
// and a scheduler on another control plane takes the leader lease.
func (r *run) expectFailover(ctx context.Context, ce *ClusterExpect, f *FailoverExpect) {
	t := r.t
	c, _, err := cluster.Load(r.clusters[ce.Cluster])
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case !slices.Contains(c.Spec.RoleGroups.ControlPlane, f.PowerOff):
		t.Errorf("expect.failover: %s is not a control plane of cluster %s", f.PowerOff, ce.Cluster)
		return
	case c.Spec.ControlPlaneEndpoint.Address == "":
		t.Errorf("expect.failover: cluster %s has no spec.controlPlaneEndpoint.address to reach it through", ce.Cluster)
		return
	}
	kubeconfig := r.endpointKubeconfig(ce.Cluster)
	// The endpoint must answer before the power cut, or what follows proves nothing about it.
	before, cancel := context.WithTimeout(ctx, 5*time.Minute)
	err = r.poll(before, apiPollEvery, "the API server to answer through the control-plane endpoint", func() (bool, string) {
		if _, err := r.kubectlNodes(before, kubeconfig); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	cancel()
	if err != nil {
		t.Errorf("failover: before switching %s off: %v", f.PowerOff, err)
		return
	}

	off := time.Now()
	since := func() string { return time.Since(off).Round(time.Second).String() }
	r.times.note(f.PowerOff, fmt.Sprintf("switched off at %s (failover check)", time.Since(r.start).Round(time.Second)))
	r.guest(f.PowerOff).Stop(t)
	t.Logf("failover: %s switched off (power cut) %s after the first power-on", f.PowerOff, time.Since(r.start).Round(time.Second))

	within, cancel := context.WithTimeout(ctx, f.Within.Duration)
	defer cancel()
	var nodes []nodeState
	err = r.poll(within, apiPollEvery, "the API server to answer through the control-plane endpoint without "+f.PowerOff, func() (bool, string) {
		var err error
		if nodes, err = r.kubectlNodes(within, kubeconfig); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	if err != nil {
		t.Errorf("failover: %v", err)
		return
	}
	t.Logf("failover: the API server answered through %s %s after the power cut; Nodes: %v", c.Spec.ControlPlaneEndpoint.Address, since(), nodes)
	r.times.note(f.PowerOff, "API through the endpoint "+since()+" after the power cut")

	manifest := filepath.Join(filepath.Dir(r.clusters[ce.Cluster]), failoverPod+".json")
	pod := map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": failoverPod, "namespace": "default"},
		"spec": map[string]any{
			"nodeSelector":                  map[string]string{"kubernetes.io/hostname": f.Schedule},
			"terminationGracePeriodSeconds": 0,
			"containers": []map[string]any{{
				"name":            "pause",
				"image":           addons.Image(c.Spec.Registry, "registry.k8s.io/pause:"+versions.PauseTag(r.sc.Version())),
				"imagePullPolicy": "IfNotPresent",
			}},
		},
	}
	b, _ := json.Marshal(pod)
	if err := os.WriteFile(manifest, b, 0o644); err != nil {
		t.Fatal(err)
	}
	err = r.poll(within, apiPollEvery, "pod "+failoverPod+" to be created", func() (bool, string) {
		if _, err := r.kubectlOutput(within, kubeconfig, "apply", "-f", manifest); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	if err != nil {
		t.Errorf("failover: %v", err)
		return
	}
	err = r.poll(within, apiPollEvery, fmt.Sprintf("pod %s to run on %s", failoverPod, f.Schedule), func() (bool, string) {
		var p struct {
			Spec   struct{ NodeName string }
			Status struct {
				Phase      string
				Conditions []struct{ Type, Status, Reason, Message string }
			}
		}
		if err := r.kubectl(within, kubeconfig, &p, "get", "pod", "-n", "default", failoverPod, "-o", "json"); err != nil {
			return false, err.Error()
		}
		state := fmt.Sprintf("node %q, phase %s", p.Spec.NodeName, p.Status.Phase)
		for _, cond := range p.Status.Conditions {
			if cond.Status != "True" {
				state += fmt.Sprintf("; %s=%s %s %s", cond.Type, cond.Status, cond.Reason, cond.Message)
			}
		}
		return p.Spec.NodeName == f.Schedule && p.Status.Phase == "Running", state
	})
	if err != nil {
		t.Errorf("failover: %v", err)
		return
	}
	t.Logf("failover: pod %s scheduled and running on %s %s after the power cut", failoverPod, f.Schedule, since())
	r.times.note(f.PowerOff, "new pod running on "+f.Schedule+" "+since()+" after the power cut")
}
