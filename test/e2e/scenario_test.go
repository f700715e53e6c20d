package e2e

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ksboot/ksboot/cluster"
)

// TestScenarioClusterFilesValid: every cluster file of every scenario is one that ksboot
// accepts, after the scenario's version and patch overrides (a scenario that fails there would
// only fail tens of minutes into a VM run), and its fixed addresses stay clear of the
// harness's own: the host side and the DHCP range.
func TestScenarioClusterFilesValid(t *testing.T) {
	files, err := Scenarios("scenarios")
	if err != nil {
		t.Fatal(err)
	}
	host := netip.MustParsePrefix(hostAddress).Addr()
	lo, hi, _ := strings.Cut(dhcpRange, ",")
	first, last := netip.MustParseAddr(lo), netip.MustParseAddr(hi)
	for name, f := range files {
		sc, err := LoadScenario(f)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		for cname, text := range sc.Clusters {
			c, _, err := cluster.Parse(filepath.Join(name, cname+".yaml"), []byte(text))
			if err != nil {
				t.Errorf("scenario %s, cluster %s: %v", name, cname, err)
				continue
			}
			check := func(what, s string) {
				a, err := netip.ParseAddr(s)
				if err != nil {
					return // a name, or no address
				}
				if a == host || (first.Compare(a) <= 0 && a.Compare(last) <= 0) {
					t.Errorf("scenario %s, cluster %s: %s %s is the harness's (host %s, DHCP %s)", name, cname, what, a, host, dhcpRange)
				}
			}
			for _, h := range c.Spec.Hosts {
				addr, _, _ := strings.Cut(h.Address, "/")
				check("host "+h.Name, addr)
			}
			check("controlPlaneEndpoint.address", c.Spec.ControlPlaneEndpoint.Address)
		}
	}
}

// TestHAScenario: the ha scenario boots a bundle with kube-vip's image at the guide's release,
// and its failover check is bound to a control plane and a worker of the cluster it forms.
func TestHAScenario(t *testing.T) {
	sc, err := LoadScenario("scenarios/ha.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := sc.Bundle(); got != "v1.26.5+kube-vip" {
		t.Errorf("bundle %q, want v1.26.5+kube-vip", got)
	}
	c, _, err := cluster.Parse("ha", []byte(sc.Clusters[sc.Expect.Cluster.Cluster]))
	if err != nil {
		t.Fatal(err)
	}
	f := sc.Expect.Failover
	if f == nil || len(c.Spec.RoleGroups.ControlPlane) != 3 {
		t.Fatalf("failover %+v, control planes %v: want a failover check and three control planes", f, c.Spec.RoleGroups.ControlPlane)
	}
	if !strings.Contains(strings.Join(c.Spec.RoleGroups.ControlPlane, ","), f.PowerOff) || !strings.Contains(strings.Join(c.Spec.RoleGroups.Worker, ","), f.Schedule) {
		t.Errorf("failover powers off %s and schedules onto %s; want a control plane and a worker", f.PowerOff, f.Schedule)
	}

	// Bad failover checks and load balancers are refused when the scenario loads.
	dir := t.TempDir()
	for what, edit := range map[string][2]string{
		"failover on an unknown guest": {"powerOff: cp1", "powerOff: cp9"},
		"failover onto itself":         {"schedule: w1", "schedule: cp1"},
		"failover without within":      {", within: 20m", ""},
		"haproxy, which has no image":  {"        internalLoadbalancer: kube-vip\n", "        internalLoadbalancer: haproxy\n"},
	} {
		text := mustRead(t, "scenarios/ha.yaml")
		if !strings.Contains(text, edit[0]) {
			t.Fatalf("%s: ha.yaml has no %q", what, edit[0])
		}
		p := filepath.Join(dir, "ha.yaml")
		if err := writeFile0(p, strings.Replace(text, edit[0], edit[1], 1)); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadScenario(p); err == nil {
			t.Errorf("%s: loaded without error", what)
		}
	}
}
