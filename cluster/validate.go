package cluster

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ksboot/ksboot/versions"
)

// PreflightChecks names the node checks of the agent's preflight phase, in the order they run.
var PreflightChecks = []string{"arch", "cpu", "memory", "disk", "os", "time", "nameserver", "ports", "hostname", "cgroup", "existing-runtime"}

var (
	dns1123Label     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	dns1123Subdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
)

// Validate checks a defaulted cluster and returns every error and warning at once, each located
// by field path and (through src) line.
func Validate(c *Cluster, src *Source) Problems {
	v := validator{src: src}
	v.run(c)
	return v.ps
}

type validator struct {
	src *Source
	ps  Problems
}

func (v *validator) errorf(path, format string, args ...any) {
	v.ps = append(v.ps, v.src.problem(path, false, format, args...))
}

func (v *validator) warnf(path, format string, args ...any) {
	v.ps = append(v.ps, v.src.problem(path, true, format, args...))
}

func (v *validator) run(c *Cluster) {
	if c.APIVersion != APIVersion {
		v.errorf("apiVersion", "must be %s, not %q", APIVersion, c.APIVersion)
	}
	if c.Kind != Kind {
		v.errorf("kind", "must be %s, not %q", Kind, c.Kind)
	}
	switch {
	case c.Metadata.Name == "":
		v.errorf("metadata.name", "a cluster name is required")
	case !isLabel(c.Metadata.Name):
		v.errorf("metadata.name", "%q must be a lowercase RFC 1123 label (a-z, 0-9, '-', at most 63 characters)", c.Metadata.Name)
	}
	hostNets := v.hosts(c)
	v.roleGroups(c)
	v.endpoint(c)
	v.kubernetes(c)
	v.etcd(c)
	v.network(c, hostNets)
	v.registry(c)
	v.kubesphere(c)
	v.discovery(c)
	v.users(c)
	if z := c.Spec.Zone; z != "" && z != "cn" {
		v.errorf("spec.zone", "must be empty or \"cn\", not %q", z)
	}
	for i, name := range c.Spec.Preflight.WarnOnly {
		if !slices.Contains(PreflightChecks, name) {
			v.errorf(fmt.Sprintf("spec.preflight.warnOnly[%d]", i), "unknown check %q (checks: %s)", name, strings.Join(PreflightChecks, ", "))
		}
	}
	if sc := c.Spec.Storage.DefaultClass; !dns1123Subdomain.MatchString(sc) {
		v.errorf("spec.storage.defaultClass", "%q is not a valid StorageClass name", sc)
	}
}

func isLabel(s string) bool { return len(s) <= 63 && dns1123Label.MatchString(s) }

type hostNet struct {
	path   string
	prefix netip.Prefix
}

func (v *validator) hosts(c *Cluster) []hostNet {
	if len(c.Spec.Hosts) == 0 {
		v.errorf("spec.hosts", "at least one host is required")
	}
	names := map[string]string{}
	addrs := map[netip.Addr]string{}
	macs := map[string]string{}
	var nets []hostNet
	for i, h := range c.Spec.Hosts {
		p := fmt.Sprintf("spec.hosts[%d]", i)
		switch {
		case h.Name == "":
			v.errorf(p+".name", "a host name is required")
		case !isLabel(h.Name):
			v.errorf(p+".name", "%q must be a lowercase RFC 1123 hostname (a-z, 0-9, '-', at most 63 characters)", h.Name)
		}
		if prev, dup := names[h.Name]; dup && h.Name != "" {
			v.errorf(p+".name", "duplicate host name %q (also %s)", h.Name, prev)
		} else {
			names[h.Name] = p
		}
		if h.Address != "" {
			pfx, err := netip.ParsePrefix(h.Address)
			switch {
			case err != nil && isIP(h.Address):
				v.errorf(p+".address", "%q needs a prefix length, e.g. %s/24", h.Address, h.Address)
			case err != nil:
				v.errorf(p+".address", "%q is not an address in CIDR form (e.g. 192.168.0.2/24)", h.Address)
			default:
				if prev, dup := addrs[pfx.Addr()]; dup {
					v.errorf(p+".address", "duplicate address %s (also %s)", pfx.Addr(), prev)
				}
				addrs[pfx.Addr()] = p
				nets = append(nets, hostNet{p + ".address", pfx.Masked()})
				if h.Gateway != "" {
					gw, err := netip.ParseAddr(h.Gateway)
					switch {
					case err != nil:
						v.errorf(p+".gateway", "%q is not an IP address", h.Gateway)
					case !pfx.Masked().Contains(gw):
						v.warnf(p+".gateway", "%s is outside the host's network %s", gw, pfx.Masked())
					}
				}
			}
		} else if h.Gateway != "" || len(h.DNS) > 0 {
			v.errorf(p+".address", "gateway and dns need a static address; without one the host uses DHCP")
		}
		for j, d := range h.DNS {
			if !isIP(d) {
				v.errorf(fmt.Sprintf("%s.dns[%d]", p, j), "%q is not an IP address", d)
			}
		}
		if h.MAC != "" {
			hw, err := net.ParseMAC(h.MAC)
			if err != nil || len(hw) != 6 {
				v.errorf(p+".mac", "%q is not a MAC address like 52:54:00:12:34:56", h.MAC)
			} else {
				m := hw.String()
				if prev, dup := macs[m]; dup {
					v.errorf(p+".mac", "duplicate MAC %s (also %s)", m, prev)
				}
				macs[m] = p
			}
		}
		if h.Arch != "amd64" && h.Arch != "arm64" {
			v.errorf(p+".arch", "must be amd64 or arm64, not %q", h.Arch)
		}
		if h.Address != "" && h.MAC == "" && h.Interface == DefaultInterface {
			v.warnf(p+".address", "no mac or interface given: the static address goes on %s; set mac to be sure", DefaultInterface)
		}
	}
	return nets
}

func isIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

func (v *validator) roleGroups(c *Cluster) {
	g := c.Spec.RoleGroups
	known := map[string]bool{}
	for _, h := range c.Spec.Hosts {
		known[h.Name] = true
	}
	inGroup := map[string]bool{}
	check := func(group string, names []string) {
		seen := map[string]bool{}
		for i, n := range names {
			p := fmt.Sprintf("spec.roleGroups.%s[%d]", group, i)
			if !known[n] {
				v.errorf(p, "%q is not a host in spec.hosts", n)
			}
			if seen[n] {
				v.errorf(p, "%q is listed twice", n)
			}
			seen[n] = true
			inGroup[n] = true
		}
	}
	check(RoleEtcd, g.Etcd)
	check(RoleControlPlane, g.ControlPlane)
	check(RoleWorker, g.Worker)
	if len(g.ControlPlane) == 0 {
		v.errorf("spec.roleGroups.control-plane", "at least one control-plane host is required")
	}
	if len(g.Etcd) == 0 {
		v.errorf("spec.roleGroups.etcd", "at least one etcd host is required")
	} else if len(g.Etcd)%2 == 0 {
		v.warnf("spec.roleGroups.etcd", "%d etcd members tolerate no more failures than %d; use an odd number", len(g.Etcd), len(g.Etcd)-1)
	}
	cps := map[string]bool{}
	for _, n := range g.ControlPlane {
		cps[n] = true
	}
	for i, n := range g.Etcd {
		if known[n] && !cps[n] {
			v.errorf(fmt.Sprintf("spec.roleGroups.etcd[%d]", i),
				"%q is not a control-plane host: ksboot runs etcd stacked on the control planes (kubeadm)", n)
		}
	}
	for i, h := range c.Spec.Hosts {
		if h.Name != "" && !inGroup[h.Name] {
			v.warnf(fmt.Sprintf("spec.hosts[%d].name", i), "host %q is in no role group and gets no seed role", h.Name)
		}
	}
}

func (v *validator) endpoint(c *Cluster) {
	e := c.Spec.ControlPlaneEndpoint
	if !dns1123Subdomain.MatchString(e.Domain) {
		v.errorf("spec.controlPlaneEndpoint.domain", "%q is not a valid DNS name", e.Domain)
	}
	if e.Address != "" && !isIP(e.Address) {
		v.errorf("spec.controlPlaneEndpoint.address", "%q is not an IP address", e.Address)
	}
	if e.Port < 1 || e.Port > 65535 {
		v.errorf("spec.controlPlaneEndpoint.port", "%d is not a TCP port", e.Port)
	}
	cps := c.Spec.RoleGroups.ControlPlane
	if len(cps) > 1 {
		// Each control plane that joins later first asks the earlier ones, at their addresses,
		// whether their etcd member and API server are healthy (bootstrap/joinorder); etcd's
		// peers find each other by these addresses too, so DHCP is no basis for them.
		why := "with several control planes each one that joins later checks the etcd member (port 2379) and API server of the ones before it at their addresses"
		if e.InternalLoadbalancer == InternalLBHAProxy {
			why += ", and with internalLoadbalancer haproxy the haproxy of every other node forwards to it"
		}
		for _, name := range cps {
			if i := c.hostIndex(name); i >= 0 && c.Spec.Hosts[i].Address == "" {
				v.errorf(fmt.Sprintf("spec.hosts[%d].address", i), "control plane %q needs a static address: %s", name, why)
			}
		}
	}
	switch e.InternalLoadbalancer {
	case "":
		if len(cps) > 1 && e.Address == "" {
			v.errorf("spec.controlPlaneEndpoint.address",
				"%d control-plane hosts need a controlPlaneEndpoint address (a load balancer or VIP in front of them), "+
					"or internalLoadbalancer: haproxy or kube-vip", len(cps))
		}
	case InternalLBHAProxy:
		if e.Address != "" {
			v.errorf("spec.controlPlaneEndpoint.address",
				"must be empty with internalLoadbalancer haproxy: every node that is not a control plane reaches the API "+
					"through its own haproxy on 127.0.0.1:%d (remove internalLoadbalancer to use a load balancer at %s)", e.Port, e.Address)
		}
		// haproxy.cfg names every control plane by address, on every other node (several
		// control planes were checked above).
		if len(cps) == 1 {
			if i := c.hostIndex(cps[0]); i >= 0 && c.Spec.Hosts[i].Address == "" {
				v.errorf(fmt.Sprintf("spec.hosts[%d].address", i),
					"control plane %q needs a static address: with internalLoadbalancer haproxy the haproxy of every other node forwards to it", cps[0])
			}
		}
	case InternalLBKubeVIP:
		v.kubeVIPTuning(e)
		if e.Address == "" {
			v.errorf("spec.controlPlaneEndpoint.address",
				"internalLoadbalancer kube-vip needs the virtual IP here: an unused address on the control planes' network, which kube-vip moves between them")
			return
		}
		v.vip(c)
	default:
		v.errorf("spec.controlPlaneEndpoint.internalLoadbalancer", "must be haproxy or kube-vip (or left out), not %q", e.InternalLoadbalancer)
	}
	if e.KubeVIPTuning != nil && e.InternalLoadbalancer != InternalLBKubeVIP {
		v.errorf("spec.controlPlaneEndpoint.kubeVIP", "tunes kube-vip: set internalLoadbalancer: kube-vip, or remove it")
	}
}

// kubeVIPTuning checks kube-vip's leader election as client-go's leader election (which kube-vip
// uses) demands: positive values, the lease longer than the renew deadline, and the deadline
// longer than 1.2 retry periods (its jitter).
func (v *validator) kubeVIPTuning(e ControlPlaneEndpoint) {
	t := e.KubeVIPTuning
	if t == nil {
		return
	}
	for _, f := range []struct {
		name string
		val  int
	}{{"leaseDuration", t.LeaseDuration}, {"renewDeadline", t.RenewDeadline}, {"retryPeriod", t.RetryPeriod}} {
		if f.val < 0 {
			v.errorf("spec.controlPlaneEndpoint.kubeVIP."+f.name, "%d seconds: must be positive (or left out for kube-vip's default)", f.val)
			return
		}
	}
	lease, renew, retry := e.LeaderElection()
	switch {
	case lease <= renew:
		v.errorf("spec.controlPlaneEndpoint.kubeVIP.leaseDuration", "%d seconds must be longer than renewDeadline (%d)", lease, renew)
	case float64(renew) <= 1.2*float64(retry):
		v.errorf("spec.controlPlaneEndpoint.kubeVIP.renewDeadline", "%d seconds must be longer than 1.2 × retryPeriod (%d)", renew, retry)
	}
}

// vip checks kube-vip's virtual IP against the hosts: it must be nobody's address, and kube-vip
// announces it by ARP, so it belongs on the control planes' segment.
func (v *validator) vip(c *Cluster) {
	const path = "spec.controlPlaneEndpoint.address"
	vip, err := netip.ParseAddr(c.Spec.ControlPlaneEndpoint.Address)
	if err != nil {
		return // reported above
	}
	var nets []string
	onSegment := false
	for i, h := range c.Spec.Hosts {
		pfx, err := netip.ParsePrefix(h.Address)
		if err != nil {
			continue
		}
		if pfx.Addr() == vip {
			v.errorf(path, "%s is the address of host %q (spec.hosts[%d]); the VIP must be an address no machine has", vip, h.Name, i)
			return
		}
		if slices.Contains(c.Spec.RoleGroups.ControlPlane, h.Name) {
			nets = append(nets, pfx.Masked().String())
			onSegment = onSegment || pfx.Masked().Contains(vip)
		}
	}
	if len(nets) > 0 && !onSegment {
		slices.Sort(nets)
		v.warnf(path, "the VIP %s is outside the control planes' networks (%s): kube-vip announces it by ARP, so it must be on their segment",
			vip, strings.Join(slices.Compact(nets), ", "))
	}
}

func (v *validator) kubernetes(c *Cluster) {
	k := c.Spec.Kubernetes
	// The version matrix (package versions) decides what a node of each minor gets; a
	// version outside it has no runtime, kubeadm API or CNI release to give it.
	if _, err := versions.Lookup(k.Version); err != nil {
		v.errorf("spec.kubernetes.version", "%v", err)
	}
	if !dns1123Subdomain.MatchString(k.ClusterName) {
		v.errorf("spec.kubernetes.clusterName", "%q is not a valid DNS domain", k.ClusterName)
	}
	if k.ContainerManager != "containerd" {
		v.errorf("spec.kubernetes.containerManager", "only containerd is supported, not %q", k.ContainerManager)
	}
	switch k.ProxyMode {
	case "ipvs", "iptables", "nftables":
	default:
		v.errorf("spec.kubernetes.proxyMode", "must be ipvs, iptables or nftables, not %q", k.ProxyMode)
	}
	for i, san := range k.APIServerCertExtraSans {
		if !isIP(san) && !dns1123Subdomain.MatchString(san) {
			v.errorf(fmt.Sprintf("spec.kubernetes.apiserverCertExtraSans[%d]", i), "%q is neither an IP address nor a DNS name", san)
		}
	}
	v.flags("spec.kubernetes.apiserverArgs", k.APIServerArgs)
	v.flags("spec.kubernetes.controllerManagerArgs", k.ControllerManagerArgs)
	v.flags("spec.kubernetes.schedulerArgs", k.SchedulerArgs)
	v.flags("spec.kubernetes.kubeletArgs", k.KubeletArgs)
	for i, p := range k.Patches {
		v.patch(fmt.Sprintf("spec.kubernetes.patches[%d]", i), p)
	}
}

// patch checks a kubeadm patch as far as can be done without the object it patches: a known
// target and type, and a document of the right shape (an object for strategic and merge
// patches, a list of operations for a JSON patch), so that a typo fails here and not in
// kubeadm on every machine.
func (v *validator) patch(path string, p Patch) {
	if !slices.Contains(PatchTargets, p.Target) {
		v.errorf(path+".target", "%q is not something kubeadm patches: use one of %s", p.Target, strings.Join(PatchTargets, ", "))
	}
	if !slices.Contains(PatchTypes, p.Type) {
		v.errorf(path+".type", "%q is not a kubeadm patch type: use strategic, merge or json", p.Type)
		return
	}
	var doc any
	if err := yaml.Unmarshal([]byte(p.Patch), &doc); err != nil {
		v.errorf(path+".patch", "not YAML or JSON: %v", err)
		return
	}
	switch doc := doc.(type) {
	case map[string]any:
		if p.Type == "json" {
			v.errorf(path+".patch", "a json patch is a list of operations (- {op: replace, path: /spec/..., value: ...}), not an object")
		}
	case []any:
		if p.Type != "json" {
			v.errorf(path+".patch", "a %s patch is an object (the fields to change), not a list; a list of operations needs type: json", p.Type)
			return
		}
		for j, op := range doc {
			m, ok := op.(map[string]any)
			if !ok || m["op"] == nil || m["path"] == nil {
				v.errorf(path+".patch", "operation %d of the list needs op and path, for example {op: replace, path: /spec/replicas, value: 1}", j+1)
			}
		}
	case nil:
		v.errorf(path+".patch", "is empty: it must hold the fields to change, for example spec: {containers: [{name: kube-apiserver, livenessProbe: {failureThreshold: 30}}]}")
	default:
		v.errorf(path+".patch", "%q is a single value, not the fields to change (for example spec: {containers: [{name: kube-apiserver, livenessProbe: {failureThreshold: 30}}]})", p.Patch)
	}
}

// flagPattern is a "name=value" command-line flag as KubeKey's *Args fields take them.
var flagPattern = regexp.MustCompile(`^(--)?[a-z0-9][a-z0-9.-]*=`)

// flags checks a list of "name=value" flags.
func (v *validator) flags(path string, args []string) {
	for i, a := range args {
		if !flagPattern.MatchString(a) {
			v.errorf(fmt.Sprintf("%s[%d]", path, i), "%q is not a flag of the form name=value (for example leader-elect-lease-duration=60s)", a)
		}
	}
}

// etcd checks etcd's timing against the limits etcd itself enforces at start-up.
func (v *validator) etcd(c *Cluster) {
	e := c.Spec.Etcd
	if e.HeartbeatInterval < 1 {
		v.errorf("spec.etcd.heartbeatInterval", "%d ms must be positive", e.HeartbeatInterval)
	}
	switch {
	case e.ElectionTimeout > 50000:
		v.errorf("spec.etcd.electionTimeout", "%d ms is more than etcd's maximum of 50000", e.ElectionTimeout)
	case e.HeartbeatInterval > 0 && e.ElectionTimeout < 5*e.HeartbeatInterval:
		v.errorf("spec.etcd.electionTimeout", "%d ms must be at least 5 heartbeats (%d ms): etcd refuses to start otherwise",
			e.ElectionTimeout, 5*e.HeartbeatInterval)
	}
	v.flags("spec.etcd.extraArgs", e.ExtraArgs)
}

func (v *validator) network(c *Cluster, hosts []hostNet) {
	n := c.Spec.Network
	switch n.Plugin {
	case "calico", "flannel", "none":
	default:
		v.errorf("spec.network.plugin", "must be calico, flannel or none, not %q", n.Plugin)
	}
	var nets []hostNet
	for _, f := range []struct{ path, value string }{
		{"spec.network.kubePodsCIDR", n.KubePodsCIDR},
		{"spec.network.kubeServiceCIDR", n.KubeServiceCIDR},
	} {
		p, err := netip.ParsePrefix(f.value)
		if err != nil {
			v.errorf(f.path, "%q is not a CIDR like 10.233.64.0/18", f.value)
			continue
		}
		if p != p.Masked() {
			v.errorf(f.path, "%s has host bits set; did you mean %s?", p, p.Masked())
			continue
		}
		nets = append(nets, hostNet{f.path, p})
	}
	if len(nets) == 2 && nets[0].prefix.Overlaps(nets[1].prefix) {
		v.errorf(nets[1].path, "%s overlaps the pod network %s", nets[1].prefix, nets[0].prefix)
	}
	reported := map[netip.Prefix]bool{}
	for _, h := range hosts {
		for _, k := range nets {
			if h.prefix.Overlaps(k.prefix) && !reported[h.prefix] {
				reported[h.prefix] = true
				v.errorf(h.path, "the host network %s overlaps %s (%s)", h.prefix, k.prefix, strings.TrimPrefix(k.path, "spec.network."))
			}
		}
	}
}

func (v *validator) registry(c *Cluster) {
	r := c.Spec.Registry
	for i, m := range r.RegistryMirrors {
		u, err := url.Parse(m)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.errorf(fmt.Sprintf("spec.registry.registryMirrors[%d]", i), "%q is not an http(s) URL", m)
		}
	}
	for i, m := range r.InsecureRegistries {
		if strings.Contains(m, "/") {
			v.errorf(fmt.Sprintf("spec.registry.insecureRegistries[%d]", i), "%q must be host[:port], without scheme or path", m)
		}
	}
	if m := c.Spec.Artifacts.Mirror; m != "" {
		u, err := url.Parse(m)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.errorf("spec.artifacts.mirror", "%q is not an http(s) URL", m)
		}
	}
}

func (v *validator) kubesphere(c *Cluster) {
	ks := c.Spec.KubeSphere
	if ks.Timeout != "" {
		if d, err := time.ParseDuration(ks.Timeout); err != nil || d <= 0 {
			v.errorf("spec.kubesphere.timeout", "%q is not a positive duration like 45m", ks.Timeout)
		}
	}
	if !ks.Enabled {
		return
	}
	maj, _, _, ok := parseVersion(ks.Version)
	if !ok {
		v.errorf("spec.kubesphere.version", "%q is not a version like v4.1.3", ks.Version)
		return
	}
	if maj != 3 && maj != 4 {
		v.errorf("spec.kubesphere.version", "ksboot installs KubeSphere v3.x or v4.x, not %s", ks.Version)
		return
	}
	if _, _, _, kok := parseVersion(c.Spec.Kubernetes.Version); kok {
		if ok, msg := CheckCompatibility(ks.Version, c.Spec.Kubernetes.Version); !ok {
			v.warnf("spec.kubesphere.version", "%s", msg)
		}
	}
	if ks.Chart != "" && maj == 3 {
		v.warnf("spec.kubesphere.chart", "v3.x installs through ks-installer; the chart is used only for v4.x")
	}
	v.adminPassword(ks, maj)
}

// installerPassword is the rule of ks-installer's precheck (roles/preinstall): a password with
// a lower-case letter, an upper-case letter and a digit, or a bcrypt hash.
var (
	bcryptHash    = regexp.MustCompile(`^\$2[ayb]\$.{56}$`)
	passwordLower = regexp.MustCompile(`[a-z]`)
	passwordUpper = regexp.MustCompile(`[A-Z]`)
	passwordDigit = regexp.MustCompile(`[0-9]`)
)

// adminPassword checks authentication.adminPassword of spec.kubesphere.configuration before
// a node finds out: for v3 it is what ks-installer's precheck refuses (it fails the install
// after the cluster is up); the password itself is never part of a message.
func (v *validator) adminPassword(ks KubeSphere, major int) {
	const path = "spec.kubesphere.configuration.authentication.adminPassword"
	auth, _ := ks.Configuration["authentication"].(map[string]any)
	raw, ok := auth["adminPassword"]
	if !ok || raw == nil {
		return
	}
	pw, isString := raw.(string)
	if !isString {
		v.errorf(path, "must be a string")
		return
	}
	if major != 3 || pw == "" {
		return // v3: empty means ks-installer generates one; v4 takes any password
	}
	_, minor, patch, _ := parseVersion(ks.Version)
	if minor < 3 || minor == 3 && patch < 1 {
		v.warnf(path, "ks-installer %s ignores it and creates the admin account with P@88w0rd; change the password after login", ks.Version)
		return
	}
	if bcryptHash.MatchString(pw) {
		return
	}
	if !passwordLower.MatchString(pw) || !passwordUpper.MatchString(pw) || !passwordDigit.MatchString(pw) {
		v.errorf(path, "ks-installer refuses a password without at least one lower-case letter, one upper-case letter and one digit (or a bcrypt hash); leave it empty to have ks-installer generate one")
	}
}

func (v *validator) discovery(c *Cluster) {
	d := c.Spec.Discovery
	switch d.Mode {
	case DiscoveryMDNS:
	case DiscoveryStatic:
		// Without an endpoint address nodes go to the first control plane's static address:
		// enough for a single control plane, and with haproxy (whose control planes all have
		// static addresses) for the joins, after which each node uses its own haproxy.
		oneTarget := len(c.Spec.RoleGroups.ControlPlane) == 1 || c.Spec.ControlPlaneEndpoint.InternalLoadbalancer == InternalLBHAProxy
		if c.Spec.ControlPlaneEndpoint.Address == "" && (!oneTarget || !hostHasAddress(c, c.InitNode())) {
			v.errorf("spec.discovery.mode", "static discovery needs controlPlaneEndpoint.address (or a first control plane with a static address, "+
				"when it is the only one or internalLoadbalancer is haproxy)")
		}
	default:
		v.errorf("spec.discovery.mode", "must be mdns or static, not %q", d.Mode)
	}
}

func hostHasAddress(c *Cluster, name string) bool {
	h, ok := c.Host(name)
	return ok && h.Address != ""
}

func (v *validator) users(c *Cluster) {
	for i, u := range c.Spec.Users {
		p := fmt.Sprintf("spec.users[%d]", i)
		if !regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`).MatchString(u.Name) {
			v.errorf(p+".name", "%q is not a valid Linux user name", u.Name)
		}
		if u.Name == "root" {
			v.errorf(p+".name", "give root no keys here; add an administrator user with sudo instead")
		}
		for j, k := range u.SSHAuthorizedKeys {
			if !looksLikeSSHKey(k) {
				v.errorf(fmt.Sprintf("%s.sshAuthorizedKeys[%d]", p, j), "not an SSH public key (expected ssh-ed25519, ssh-rsa, ecdsa-sha2-…)")
			}
		}
	}
}

func looksLikeSSHKey(k string) bool {
	for _, prefix := range []string{"ssh-", "ecdsa-sha2-", "sk-"} {
		if strings.HasPrefix(strings.TrimSpace(k), prefix) && len(strings.Fields(k)) >= 2 {
			return true
		}
	}
	return false
}
