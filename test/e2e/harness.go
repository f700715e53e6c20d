package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ksboot/ksboot/bootstrap/state"
	"github.com/ksboot/ksboot/bootstrap/workflow"
	"github.com/ksboot/ksboot/cluster"
	"github.com/ksboot/ksboot/discovery"
	"github.com/ksboot/ksboot/test/bundle"
	"github.com/ksboot/ksboot/test/k8sbin"
	"github.com/ksboot/ksboot/test/ksbootbin"
	"github.com/ksboot/ksboot/test/testpki"
	"github.com/ksboot/ksboot/test/vm"
)

// The segment every scenario uses: the host side is .1 (router and resolver in DHCP answers,
// though it routes and resolves nothing), DHCP hands out .100–.149.
const (
	hostAddress = "10.77.0.1/24"
	dhcpRange   = "10.77.0.100,10.77.0.149"
)

// haltNever is a path no guest ever creates: e2e guests run until the suite stops them.
const haltNever = "/var/lib/ksboot-e2e/never"

// pollEvery is how often the suite reads the serial logs; apiPollEvery how often it asks the
// API server and `ksboot watch`. Each kubectl run is a new TLS handshake with an API server
// that, under TCG, needs every cycle it can get: the measurement should not be a load of its own.
const (
	pollEvery    = 5 * time.Second
	apiPollEvery = 15 * time.Second
)

// Env is what every scenario shares: the agent and the guest image, and per bundle
// (Scenario.Bundle: a Kubernetes release, with or without a load balancer's image) the bundle ISO
// and a kubectl of that release, built once per test binary.
type Env struct {
	Bin, BinSum string
	Image       *vm.Image
	Releases    map[string]Release
}

// Release is what the scenarios of one bundle use.
type Release struct {
	BundleISO string
	Kubectl   string
}

// Prepare builds (or finds cached) everything the scenarios need (Scenario.Bundle), and skips
// the test with the reason when the machine cannot run guests.
func Prepare(t *testing.T, scenarios ...*Scenario) *Env {
	t.Helper()
	vm.Available(t)
	for _, tool := range []string{"apt-get", "go", "debugfs", "dnsmasq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: %s is not on PATH (hack/install-deps.sh installs it)", tool)
		}
	}
	e := &Env{Releases: map[string]Release{}}
	e.Bin, e.BinSum = ksbootbin.Build(t, "v0.0.0-e2e")
	// net-tools and resolvconf: what cloud images have, so that ifupdown applies the gateway
	// and nameservers of the seed's network-config (cloud-init renders them as `route` and
	// resolvconf lines).
	e.Image = vm.GuestImage(t, vm.ImageOptions{HaltOn: haltNever, ExtraPackages: []string{"net-tools", "resolvconf"}})
	t.Logf("guest image %s (built in %s; 0 = cached)", e.Image.Key, e.Image.BuildTime.Round(time.Second))
	for _, sc := range scenarios {
		if _, ok := e.Releases[sc.Bundle()]; ok {
			continue
		}
		start := time.Now()
		v := sc.Version()
		dir := bundle.Dir(t, e.Image, bundle.Options{KubernetesVersion: v, Images: true, LoadBalancer: sc.loadBalancer, UpgradeTo: sc.UpgradeTo()})
		e.Releases[sc.Bundle()] = Release{BundleISO: bundleISO(t, e.Bin, dir, v), Kubectl: k8sbin.BinaryAt(t, v, "kubectl")}
		t.Logf("bundle %s: ready in %s (0 = cached)", sc.Bundle(), time.Since(start).Round(time.Second))
	}
	return e
}

// bundleISO packs dir with `ksboot bundle --from-dir` into a bundle.iso beside it, once: the
// directory's cache key covers its content (and the Kubernetes release).
func bundleISO(t *testing.T, bin, dir, version string) string {
	t.Helper()
	iso := filepath.Join(filepath.Dir(dir), "bundle.iso")
	if _, err := os.Stat(iso); err == nil {
		return iso
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "bundle", "--from-dir", dir, "--kubernetes-version", version, "-o", iso).CombinedOutput()
	if err != nil {
		t.Fatalf("ksboot bundle --from-dir %s: %v\n%s", dir, err, out)
	}
	st, _ := os.Stat(iso)
	t.Logf("bundle ISO %s: %d MiB, packed in %s", iso, st.Size()>>20, time.Since(start).Round(time.Second))
	return iso
}

// run is one scenario in progress.
type run struct {
	t        *testing.T
	env      *Env
	sc       *Scenario
	work     string
	clusters map[string]string // name → cluster file
	seeds    map[string]string // seed name → file
	seg      *vm.Segment
	start    time.Time // the first guest's power-on
	art      string    // artifact directory

	mu     sync.Mutex
	guests map[string]*vm.Guest
	// started is each guest's power-on after the first one's (a guest switched off by the
	// scenario no longer tells it by its run time).
	started map[string]time.Duration
	times   *timings
}

// RunScenario runs one scenario, checks its expectations and returns the time from the first
// power-on to all Nodes Ready (zero if the cluster never formed or none was expected).
func RunScenario(t *testing.T, env *Env, sc *Scenario) time.Duration {
	r := &run{t: t, env: env, sc: sc, work: t.TempDir(), clusters: map[string]string{}, seeds: map[string]string{},
		guests: map[string]*vm.Guest{}, started: map[string]time.Duration{}, times: newTimings()}
	if _, ok := env.Releases[sc.Bundle()]; !ok {
		t.Fatalf("scenario %s boots bundle %s, which the suite did not prepare", sc.Name, sc.Bundle())
	}
	r.art = artifactDir(t, sc.Name)
	t.Logf("scenario %s: %s; Kubernetes %s; artifacts in %s", sc.Name, sc.Summary, sc.Version(), r.art)
	r.writeClusters()
	if sc.Baseline != nil {
		r.baselineSeeds()
	} else {
		r.buildSeeds()
	}
	r.seg = vm.NewBridgedSegment(t, vm.BridgeOptions{HostAddress: hostAddress, DHCPRange: dhcpRange})
	// A deferred call, not t.Cleanup: the guests' temporary directories (serial logs,
	// disks) are removed by cleanups that run before any registered here.
	defer r.keepArtifacts()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	monitorDone := make(chan struct{})
	go func() { defer close(monitorDone); r.monitor(ctx) }()
	defer func() { cancel(); <-monitorDone }()

	r.startGuests(ctx)
	deadline, dcancel := context.WithTimeout(ctx, sc.Deadline.Duration)
	defer dcancel()

	var wg sync.WaitGroup
	if c := sc.Expect.Cluster; c != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !r.expectCluster(deadline, c) {
				return
			}
			if sc.Expect.Failover != nil {
				r.expectFailover(deadline, c, sc.Expect.Failover)
			}
			if sc.Expect.DeleteNode != nil {
				r.expectDeleteNode(deadline, c, sc.Expect.DeleteNode)
			}
			if sc.Expect.Upgrade != nil {
				r.expectUpgrade(deadline, c, sc.Expect.Upgrade)
			}
		}()
	}
	for _, f := range sc.Expect.Fails {
		wg.Add(1)
		go func() { defer wg.Done(); r.expectFailure(deadline, f) }()
	}
	wg.Wait()
	for _, f := range sc.Expect.Fails {
		r.expectNotJoined(f)
	}
	if c := sc.Expect.Cluster; c != nil {
		r.keepClusterState(c.Cluster)
	}
	r.times.print(t, r.sc, r.guestStarts())
	return r.times.Ready()
}

func (r *run) writeClusters() {
	for _, name := range slices.Sorted(mapKeys(r.sc.Clusters)) {
		dir := filepath.Join(r.work, "cluster-"+name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			r.t.Fatal(err)
		}
		file := filepath.Join(dir, "cluster.yaml")
		if err := os.WriteFile(file, []byte(r.sc.Clusters[name]), 0o600); err != nil {
			r.t.Fatal(err)
		}
		r.clusters[name] = file
	}
}

func (r *run) buildSeeds() {
	out := filepath.Join(r.work, "seeds")
	for _, s := range r.sc.Seeds {
		dir := filepath.Join(out, s.Name)
		args := append([]string{"build-seed", "-f", r.clusters[s.Cluster], "-o", dir, "--agent", r.env.Bin}, s.Args...)
		b, err := exec.Command(r.env.Bin, args...).CombinedOutput()
		if err != nil {
			r.t.Fatalf("ksboot %s: %v\n%s", strings.Join(args, " "), err, b)
		}
		isos, _ := filepath.Glob(filepath.Join(dir, "*.iso"))
		if len(isos) != 1 {
			r.t.Fatalf("seed %s: build-seed made %d ISOs in %s, want 1:\n%s", s.Name, len(isos), dir, b)
		}
		r.seeds[s.Name] = isos[0]
	}
}

// startGuests switches the guests on in StartAfter order and returns when the last is on.
func (r *run) startGuests(ctx context.Context) {
	order := slices.Clone(r.sc.Guests)
	slices.SortStableFunc(order, func(a, b GuestSpec) int { return int(a.StartAfter.Duration - b.StartAfter.Duration) })
	for _, gs := range order {
		if !r.start.IsZero() {
			if wait := time.Until(r.start.Add(gs.StartAfter.Duration)); wait > 0 {
				r.t.Logf("guest %s: switching on in %s", gs.Name, wait.Round(time.Second))
				select {
				case <-time.After(wait):
				case <-ctx.Done():
					return
				}
			}
		}
		g := vm.Start(r.t, r.env.Image, vm.Options{Name: gs.Name, CPUs: gs.CPUs, MemMiB: gs.MemMiB, DiskMiB: gs.DiskMiB, TBMiB: gs.TBMiB,
			Seed: r.seeds[gs.Seed], ExtraDrives: []string{r.release().BundleISO},
			NICs: []vm.NIC{{MAC: gs.MAC}}, Segment: r.seg})
		if gs.Nice != 0 && gs.NiceOn == "" {
			g.Renice(r.t, gs.Nice)
		}
		r.mu.Lock()
		if r.start.IsZero() {
			r.start = time.Now()
		}
		r.guests[gs.Name] = g
		r.started[gs.Name] = time.Since(r.start)
		r.mu.Unlock()
	}
}

// release is what the scenario's Kubernetes release uses (Prepare made it).
func (r *run) release() Release { return r.env.Releases[r.sc.Bundle()] }

func (r *run) guest(name string) *vm.Guest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.guests[name]
}

// guestStarts is each guest's power-on, relative to the first one's.
func (r *run) guestStarts() map[string]time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]time.Duration{}
	for name, d := range r.started {
		out[name] = d
	}
	return out
}

// phaseLine is the agent's console line at the end of a phase.
var phaseLine = regexp.MustCompile(`ksboot: \[(\w+)\] (done in|FAILED after) `)

// monitor reads every guest's serial log each pollEvery: it times phase ends and performs
// the scenario's hard resets.
func (r *run) monitor(ctx context.Context) {
	reset, reniced := map[string]bool{}, map[string]bool{}
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		for _, gs := range r.sc.Guests {
			g := r.guest(gs.Name)
			if g == nil {
				continue
			}
			log := g.SerialLog()
			for _, m := range phaseLine.FindAllStringSubmatch(log, -1) {
				r.times.saw(gs.Name, m[1], g.Runtime(), m[2] != "done in")
			}
			if gs.ResetOn != "" && !reset[gs.Name] && regexp.MustCompile(gs.ResetOn).MatchString(log) {
				reset[gs.Name] = true
				r.times.note(gs.Name, fmt.Sprintf("hard reset at %s (serial matched %q)", g.Runtime().Round(time.Second), gs.ResetOn))
				g.HardReset(r.t)
			}
			if gs.NiceOn != "" && !reniced[gs.Name] && regexp.MustCompile(gs.NiceOn).MatchString(log) {
				reniced[gs.Name] = true
				r.times.note(gs.Name, fmt.Sprintf("qemu at nice %d from %s (serial matched %q)", gs.Nice, g.Runtime().Round(time.Second), gs.NiceOn))
				g.Renice(r.t, gs.Nice)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// expectCluster waits until the cluster has formed: every expected node Ready, the system
// pods Running and ready, and (with Watch) every node done in `ksboot watch`. It reports
// whether all of that came true.
func (r *run) expectCluster(ctx context.Context, c *ClusterExpect) bool {
	t := r.t
	file := r.clusters[c.Cluster]
	kubeconfig := r.kubeconfig(c.Cluster)
	want := len(c.Nodes)
	var last string
	err := r.poll(ctx, apiPollEvery, "all Nodes Ready", func() (bool, string) {
		nodes, err := r.kubectlNodes(ctx, kubeconfig)
		if err != nil {
			return false, err.Error()
		}
		ready := 0
		var states []string
		for _, n := range nodes {
			states = append(states, n.Name+"="+n.Ready)
			if n.Ready == "True" {
				ready++
			}
		}
		slices.Sort(states)
		return ready >= want, fmt.Sprintf("%d/%d Nodes Ready: %s", ready, want, strings.Join(states, " "))
	})
	if err != nil {
		t.Errorf("cluster %s did not form: %v", c.Cluster, err)
		return false
	}
	r.times.clusterReady(time.Since(r.start))
	t.Logf("all %d Nodes Ready %s after the first power-on", want, time.Since(r.start).Round(time.Second))

	err = r.poll(ctx, apiPollEvery, "system pods Running", func() (bool, string) {
		pods, err := r.kubectlPods(ctx, kubeconfig, "kube-system", "kube-flannel")
		if err != nil {
			return false, err.Error()
		}
		var waiting []string
		for _, p := range pods {
			if !p.Running {
				waiting = append(waiting, p.Namespace+"/"+p.Name+" "+p.Why)
			}
		}
		slices.Sort(waiting)
		last = fmt.Sprintf("%d pods, not running: %s", len(pods), strings.Join(waiting, "; "))
		return len(pods) > 0 && len(waiting) == 0, last
	})
	if err != nil {
		t.Errorf("cluster %s: %v", c.Cluster, err)
		return false
	}
	if !c.Watch {
		return true
	}
	err = r.poll(ctx, apiPollEvery, "every node done in ksboot watch", func() (bool, string) {
		snap, err := r.watch(ctx, file)
		if err != nil {
			return false, err.Error()
		}
		done := 0
		var rows []string
		for _, row := range snap.Nodes {
			rows = append(rows, fmt.Sprintf("%s(%s)=%s", row.Node, row.Address, row.Phase))
			if row.Phase == workflow.OutcomeDone && !row.Foreign {
				done++
			}
		}
		slices.Sort(rows)
		return done >= want, fmt.Sprintf("%d/%d done: %s", done, want, strings.Join(rows, " "))
	})
	if err != nil {
		t.Errorf("cluster %s: %v", c.Cluster, err)
		return false
	}
	t.Logf("ksboot watch shows all %d nodes done %s after the first power-on", want, time.Since(r.start).Round(time.Second))
	return true
}

// expectFailure waits for the guest's console to report the failure (and watch to show it),
// then checks that it never joined.
func (r *run) expectFailure(ctx context.Context, f FailExpect) {
	t := r.t
	within, cancel := context.WithTimeout(ctx, f.Within.Duration)
	defer cancel()
	re := regexp.MustCompile(f.Console)
	err := r.poll(within, pollEvery, fmt.Sprintf("guest %s to report %q on its console", f.Guest, f.Console), func() (bool, string) {
		g := r.guest(f.Guest)
		if g == nil {
			return false, "not switched on yet"
		}
		log := g.SerialLog()
		if m := re.FindString(log); m != "" {
			t.Logf("guest %s reported on its console: %s", f.Guest, m)
			return true, ""
		}
		return false, lastLine(log)
	})
	if err != nil {
		t.Errorf("%v", err)
		return
	}
	if f.Watch != "" {
		wre := regexp.MustCompile(f.Watch)
		file := r.clusters[r.sc.Seeds[slices.IndexFunc(r.sc.Seeds, func(s Seed) bool { return s.Name == r.sc.guest(f.Guest).Seed })].Cluster]
		err := r.poll(within, apiPollEvery, fmt.Sprintf("ksboot watch to show %q", f.Watch), func() (bool, string) {
			snap, err := r.watch(ctx, file)
			if err != nil {
				return false, err.Error()
			}
			b, _ := json.Marshal(snap)
			return wre.Match(b), string(b)
		})
		if err != nil {
			t.Errorf("%v", err)
		}
	}
}

// expectNotJoined checks, once every other expectation has been waited for, that the failing
// guest is not a Node of the cluster it must stay out of. Asked any earlier (run 12: right
// after the guest's console message, while that cluster's control plane was still in
// kubeadm init) there is no API to ask, and an empty answer would prove nothing.
func (r *run) expectNotJoined(f FailExpect) {
	if f.NotJoined == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var nodes []nodeState
	err := r.poll(ctx, apiPollEvery, fmt.Sprintf("the Nodes of cluster %s, to check that guest %s is not one", f.NotJoined, f.Guest), func() (bool, string) {
		var err error
		nodes, err = r.kubectlNodes(ctx, r.kubeconfig(f.NotJoined))
		if err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	if err != nil {
		r.t.Errorf("%v", err)
		return
	}
	if c := r.sc.Expect.Cluster; c != nil && len(nodes) > len(c.Nodes) {
		var names []string
		for _, n := range nodes {
			names = append(names, n.Name)
		}
		r.t.Errorf("guest %s joined cluster %s: it has %d nodes (%s), want %d", f.Guest, f.NotJoined, len(nodes), strings.Join(names, ", "), len(c.Nodes))
		return
	}
	r.t.Logf("guest %s is not a Node of cluster %s (%d Nodes)", f.Guest, f.NotJoined, len(nodes))
}

// poll calls check every interval until it returns true or ctx ends; the error says what was
// awaited and the last state. Progress is logged when the state changes, and every
// stillEvery while it does not (a guest that has gone quiet is a finding too).
func (r *run) poll(ctx context.Context, every time.Duration, what string, check func() (bool, string)) error {
	const stillEvery = 5 * time.Minute
	tick := time.NewTicker(every)
	defer tick.Stop()
	var last string
	var changed, logged time.Time
	for {
		ok, state := check()
		if ok {
			return nil
		}
		switch now := time.Now(); {
		case state != last:
			r.t.Logf("[%s] waiting for %s: %s", time.Since(r.start).Round(time.Second), what, state)
			last, changed, logged = state, now, now
		case now.Sub(logged) >= stillEvery:
			r.t.Logf("[%s] still waiting for %s, unchanged for %s: %s", time.Since(r.start).Round(time.Second), what, now.Sub(changed).Round(time.Second), state)
			logged = now
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: not reached %s after the first power-on (%v); last state: %s", what, time.Since(r.start).Round(time.Second), ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// kubeconfig writes an admin kubeconfig for the cluster's first control plane, signed by the
// cluster's CA (from its secrets directory, as build-seed made it).
func (r *run) kubeconfig(name string) string {
	return r.adminKubeconfig(name, "admin.conf", func(c *cluster.Cluster) string {
		cp := c.Spec.RoleGroups.ControlPlane[0]
		var addr string
		for _, h := range c.Spec.Hosts {
			if h.Name == cp {
				addr, _, _ = strings.Cut(h.Address, "/")
			}
		}
		return fmt.Sprintf("https://%s:6443", addr)
	})
}

// adminKubeconfig writes, once, dir(cluster file)/file: an admin kubeconfig for the API server
// at server(cluster), signed by the cluster's CA.
func (r *run) adminKubeconfig(name, file string, server func(*cluster.Cluster) string) string {
	path := filepath.Join(filepath.Dir(r.clusters[name]), file)
	if _, err := os.Stat(path); err == nil {
		return path
	}
	c, _, err := cluster.Load(r.clusters[name])
	if err != nil {
		r.t.Fatal(err)
	}
	s, err := cluster.ReadSecrets(cluster.SecretsDir(r.clusters[name], c.Metadata.Name))
	if err != nil {
		r.t.Fatal(err)
	}
	testpki.AdminKubeconfig(r.t, s, server(c), path)
	return path
}

type nodeState struct{ Name, Ready string }

func (r *run) kubectlNodes(ctx context.Context, kubeconfig string) ([]nodeState, error) {
	var list struct {
		Items []struct {
			Metadata struct{ Name string }
			Status   struct {
				Conditions []struct{ Type, Status string }
			}
		}
	}
	if err := r.kubectl(ctx, kubeconfig, &list, "get", "nodes", "-o", "json"); err != nil {
		return nil, err
	}
	var out []nodeState
	for _, it := range list.Items {
		n := nodeState{Name: it.Metadata.Name, Ready: "Unknown"}
		for _, c := range it.Status.Conditions {
			if c.Type == "Ready" {
				n.Ready = c.Status
			}
		}
		out = append(out, n)
	}
	return out, nil
}

type podState struct {
	Namespace, Name, Why string
	Running              bool
}

func (r *run) kubectlPods(ctx context.Context, kubeconfig string, namespaces ...string) ([]podState, error) {
	var out []podState
	for _, ns := range namespaces {
		var list struct {
			Items []struct {
				Metadata struct{ Name string }
				Status   struct {
					Phase             string
					ContainerStatuses []struct {
						Ready bool
						State map[string]struct {
							Reason string
						}
					}
				}
			}
		}
		if err := r.kubectl(ctx, kubeconfig, &list, "get", "pods", "-n", ns, "-o", "json"); err != nil {
			return nil, err
		}
		for _, it := range list.Items {
			p := podState{Namespace: ns, Name: it.Metadata.Name, Running: it.Status.Phase == "Running"}
			why := []string{it.Status.Phase}
			for _, cs := range it.Status.ContainerStatuses {
				if !cs.Ready {
					p.Running = false
					for state, s := range cs.State {
						why = append(why, state+":"+s.Reason)
					}
				}
			}
			p.Why = strings.Join(why, ",")
			out = append(out, p)
		}
	}
	return out, nil
}

// kubectl runs the cached kubectl inside the segment's namespace and decodes its JSON output.
func (r *run) kubectl(ctx context.Context, kubeconfig string, v any, args ...string) error {
	out, err := r.kubectlOutput(ctx, kubeconfig, args...)
	if err != nil {
		return err
	}
	return json.Unmarshal(out, v)
}

func (r *run) kubectlOutput(ctx context.Context, kubeconfig string, args ...string) ([]byte, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := r.seg.Command(cctx, r.release().Kubectl, append([]string{"--kubeconfig", kubeconfig, "--request-timeout", "20s"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, lastLine(stderr.String()))
	}
	return out, nil
}

// keepClusterState writes what kubectl shows of the cluster at the end of the run (Nodes, pods,
// events) to the artifacts: a pod stuck in ContainerCreating is explained only by its events.
func (r *run) keepClusterState(cluster string) {
	kubeconfig := r.kubeconfig(cluster)
	if r.sc.Expect.Failover != nil {
		// The first control plane has been switched off.
		kubeconfig = r.endpointKubeconfig(cluster)
	}
	var b strings.Builder
	for _, args := range [][]string{
		{"get", "nodes", "-o", "wide"},
		{"get", "pods", "-A", "-o", "wide"},
		{"get", "events", "-A", "--sort-by", ".lastTimestamp"},
	} {
		fmt.Fprintf(&b, "$ kubectl %s\n", strings.Join(args, " "))
		out, err := r.kubectlOutput(context.Background(), kubeconfig, args...)
		if err != nil {
			fmt.Fprintf(&b, "%v\n", err)
		}
		b.Write(out)
		b.WriteString("\n")
	}
	if err := os.MkdirAll(r.art, 0o755); err != nil {
		r.t.Errorf("artifacts: %v", err)
		return
	}
	if err := os.WriteFile(filepath.Join(r.art, "cluster-"+cluster+".txt"), []byte(b.String()), 0o644); err != nil {
		r.t.Errorf("artifacts: %v", err)
	}
}

// watch runs `ksboot watch -f FILE --once -o json` inside the segment's namespace.
func (r *run) watch(ctx context.Context, file string) (*discovery.Table, error) {
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := r.seg.Command(cctx, r.env.Bin, "watch", "-f", file, "--once", "-o", "json")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("ksboot watch: %v: %s", err, lastLine(stderr.String()))
	}
	var snap discovery.Table
	if err := json.Unmarshal(out, &snap); err != nil {
		return nil, fmt.Errorf("ksboot watch printed %q: %w", out, err)
	}
	return &snap, nil
}

// keepArtifacts stops the guests and keeps, per guest, its serial log, status.json and pod
// logs, and the timing table.
func (r *run) keepArtifacts() {
	t := r.t
	r.mu.Lock()
	guests := make(map[string]*vm.Guest, len(r.guests))
	for k, v := range r.guests {
		guests[k] = v
	}
	r.mu.Unlock()
	for _, name := range slices.Sorted(func(yield func(string) bool) {
		for k := range guests {
			if !yield(k) {
				return
			}
		}
	}) {
		g := guests[name]
		g.Stop(t)
		dir := filepath.Join(r.art, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Errorf("artifacts: %v", err)
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, "serial.log"), []byte(g.SerialLog()), 0o644); err != nil {
			t.Errorf("artifacts: %v", err)
		}
		for _, f := range []string{"/" + state.StatusFile, "/var/lib/ksboot/bootstrap.failed"} {
			b, err := g.ReadFile(f)
			if errors.Is(err, fs.ErrNotExist) {
				continue // a baseline guest has no status; a node that did not fail no marker
			}
			if err != nil {
				t.Errorf("artifacts: %v", err)
				continue
			}
			if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644); err != nil {
				t.Errorf("artifacts: %v", err)
			}
		}
		// The containers' logs, the previous runs of a restarted API server among them. Best
		// effort: the guest was stopped, not shut down, so its file system may hold directory
		// blocks written half-way (debugfs: "Directory block checksum does not match"), which
		// says nothing about the scenario.
		if err := g.CopyDir("/var/log/pods", dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Logf("artifacts: pod logs of %s not (all) copied: %v", name, err)
		}
	}
	if err := os.WriteFile(filepath.Join(r.art, "timings.txt"), []byte(r.times.table(r.sc, r.guestStarts())), 0o644); err != nil {
		t.Errorf("artifacts: %v", err)
	}
	t.Logf("artifacts kept in %s", r.art)
}

func artifactDir(t *testing.T, name string) string {
	base := os.Getenv("KSBOOT_E2E_ARTIFACTS")
	if base == "" {
		base = filepath.Join(os.TempDir(), "ksboot-e2e")
	}
	dir := filepath.Join(base, time.Now().UTC().Format("20060102T150405Z")+"-"+name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}
