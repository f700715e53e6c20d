package osconfig

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/ksboot/ksboot/bootstrap/host"
	"github.com/ksboot/ksboot/bootstrap/host/hosttest"
	"github.com/ksboot/ksboot/cluster"
)

func nodeConfig(t *testing.T, name string) *cluster.NodeConfig {
	s, err := cluster.NewSecrets()
	if err != nil {
		t.Fatal(err)
	}
	c := cluster.Sample(cluster.SampleOptions{})
	c.Spec.NTP.Servers = []string{"192.168.0.1"}
	c.Spec.Kubernetes.ProxyMode = "ipvs"
	nc, err := cluster.NodeConfigFor(c, s, name)
	if err != nil {
		t.Fatal(err)
	}
	return nc
}

func TestRunTwiceIsIdempotent(t *testing.T) {
	root := host.Root(t.TempDir())
	for p, s := range map[string]string{
		"/etc/hosts": "127.0.0.1 localhost\n::1 localhost\n",
		"/etc/fstab": "/dev/vda / ext4 rw 0 0\n/swapfile none swap sw 0 0\n",
		"/lib/systemd/system/systemd-timesyncd.service": "[Unit]\n",
	} {
		if _, err := root.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	nc := nodeConfig(t, "node2")
	var snapshot string
	for i := 0; i < 2; i++ {
		stub := hosttest.NewStub(t)
		stub.Register(`^hostname node2$`, "", nil)
		stub.Register(`^swapoff -a$`, "", nil)
		stub.Allow(`^modprobe (overlay|br_netfilter|ip_vs.*|nf_conntrack)$`, "")
		stub.Register(`^sysctl -p /etc/sysctl.d/99-ksboot-kubernetes.conf$`, "", nil)
		stub.Register(`^systemctl enable --now systemd-timesyncd$`, "", nil)
		stub.Register(`^systemctl is-active firewalld$`, "inactive\n", errors.New("exit status 3"))
		stub.Register(`^systemctl is-active ufw$`, "inactive\n", errors.New("exit status 3"))
		if err := Run(context.Background(), Options{Root: root, Exec: stub, Config: nc, NodeName: "node2"}); err != nil {
			t.Fatal(err)
		}
		hosts, _ := root.ReadFile("/etc/hosts")
		fstab, _ := root.ReadFile("/etc/fstab")
		if i == 0 {
			snapshot = string(hosts) + string(fstab)
		} else if snapshot != string(hosts)+string(fstab) {
			t.Errorf("second run changed files:\n%s", string(hosts)+string(fstab))
		}
	}
	hosts, _ := root.ReadFile("/etc/hosts")
	for _, want := range []string{"::1 localhost", "192.168.0.12 node2.cluster.local node2", "192.168.0.11 lb.kubesphere.local"} {
		if !strings.Contains(string(hosts), want) {
			t.Errorf("/etc/hosts lacks %q:\n%s", want, hosts)
		}
	}
	if strings.Count(string(hosts), "BEGIN ksboot") != 1 {
		t.Errorf("managed block duplicated:\n%s", hosts)
	}
	fstab, _ := root.ReadFile("/etc/fstab")
	if !strings.Contains(string(fstab), "# disabled by ksboot") || strings.Count(string(fstab), "# disabled") != 1 {
		t.Errorf("fstab: %s", fstab)
	}
	ts, _ := root.ReadFile(TimesyncdFile)
	if !strings.Contains(string(ts), "NTP=192.168.0.1") {
		t.Errorf("timesyncd: %s", ts)
	}
	mods, _ := root.ReadFile(ModulesFile)
	if !strings.Contains(string(mods), "br_netfilter") || !strings.Contains(string(mods), "ip_vs") {
		t.Errorf("modules: %s", mods)
	}
}

func TestFirewalldPortsOpened(t *testing.T) {
	root := host.Root(t.TempDir())
	nc := nodeConfig(t, "node1")
	stub := hosttest.NewStub(t)
	stub.Register(`^systemctl is-active firewalld$`, "active\n", nil)
	stub.Allow(`^firewall-cmd --permanent --add-port=`, "")
	stub.Register(`^firewall-cmd --reload$`, "", nil)
	if err := Firewall(context.Background(), Options{Root: root, Exec: stub, Config: nc}); err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(stub.Calls, "\n")
	for _, want := range []string{"--add-port=6443/tcp", "--add-port=2379-2380/tcp", "--add-port=179/tcp"} {
		if !strings.Contains(joined, want) {
			t.Errorf("no %s in %s", want, joined)
		}
	}
}

func TestHostsEntriesWithDiscoveredEndpoint(t *testing.T) {
	nc := nodeConfig(t, "node2")
	got := HostsEntries(nc, "10.9.9.9")
	if got[len(got)-1] != "10.9.9.9 lb.kubesphere.local" {
		t.Errorf("%v", got)
	}
}

// TestKernelModulesConntrackInEveryMode guards the e2e finding: kube-proxy exits at start when
// nf_conntrack is not loaded, whatever its mode.
func TestKernelModulesConntrackInEveryMode(t *testing.T) {
	for _, mode := range []string{"iptables", "nftables", "ipvs"} {
		mods := KernelModules(mode)
		if !slices.Contains(mods, "nf_conntrack") || !slices.Contains(mods, "br_netfilter") {
			t.Errorf("%s: modules %v lack nf_conntrack or br_netfilter", mode, mods)
		}
		if got := slices.Contains(mods, "ip_vs"); got != (mode == "ipvs") {
			t.Errorf("%s: ip_vs loaded = %v", mode, got)
		}
	}
}
