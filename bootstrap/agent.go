package bootstrap

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ksboot/ksboot/bootstrap/host"
	"github.com/ksboot/ksboot/bootstrap/preflight"
	"github.com/ksboot/ksboot/bootstrap/state"
	"github.com/ksboot/ksboot/bootstrap/workflow"
	"github.com/ksboot/ksboot/cluster"
)

// Options configure one agent run.
type Options struct {
	// ConfigPath is the node config, normally /etc/ksboot/node.yaml. It is read under Root.
	ConfigPath string
	// Root is prepended to every path the agent reads or writes on the host ("/" on a node).
	Root string
	// Version is the agent's own version, logged and recorded.
	Version string
	// Logger receives structured progress (the journal on a node).
	Logger *slog.Logger
	// Console receives one short human line per event (the serial console on a node).
	Console io.Writer
	// Exec runs commands; nil means the real machine (or a printer in DryRun).
	Exec host.Runner
	// DryRun prints every command instead of running it and writes files only under Root.
	DryRun bool
	// Skip and Only select phases (ksboot agent run --skip-phases, ksboot agent phase NAME).
	Skip []string
	Only string
	// DiscoverTimeout bounds the wait for the control plane.
	DiscoverTimeout time.Duration
	// JoinOrderTimeout bounds a joining control plane's wait for the control planes before it
	// (default joinorder.DefaultTimeout).
	JoinOrderTimeout time.Duration
	// HTTP downloads artifacts; nil means a default client.
	HTTP *http.Client
	// Interfaces lists the host's addresses; nil means the real interfaces.
	Interfaces func() ([]string, error)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Sleep pauses before retrying a phase that keeps failing and returns early with the
	// context's error; nil means a timer.
	Sleep func(ctx context.Context, d time.Duration) error
}

// Node is the data every phase shares: who the node is and how to reach the machine.
type Node struct {
	Config           *cluster.NodeConfig
	Name             string
	Addresses        []string
	Root             host.Root
	Exec             host.Runner
	OS               host.OS
	Arch             string
	DryRun           bool
	Logger           *slog.Logger
	Console          io.Writer
	Journal          io.Writer // long command output (kubeadm) goes here
	HTTP             *http.Client
	DiscoverTimeout  time.Duration
	JoinOrderTimeout time.Duration
	Status           *state.Status
}

// AdvertiseAddress is the address the node's API server and kubelet use: the static address
// from the cluster file, else the first IPv4 address of the machine.
func (n *Node) AdvertiseAddress() string {
	if h, ok := n.Config.Cluster.Host(n.Name); ok && h.Address != "" && !n.Config.Node.Generic {
		ip, _, _ := strings.Cut(h.Address, "/")
		return ip
	}
	for _, a := range n.Addresses {
		ip, _, _ := strings.Cut(a, "/")
		if p := net.ParseIP(ip); p != nil && p.To4() != nil {
			return ip
		}
	}
	return ""
}

// AdminConfig is the client configuration of the cluster's admin kubeconfig on this control plane.
func (n *Node) AdminConfig() (*rest.Config, error) {
	path := n.Root.Path("/etc/kubernetes/admin.conf")
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("reading the admin kubeconfig %s: %w", path, err)
	}
	return cfg, nil
}

// Identity is who this node is, as worked out from the node config and the machine.
type Identity struct {
	Cluster   string
	Node      string
	Roles     []string
	Init      bool
	Addresses []string
}

// Run loads the node config, establishes the node's identity and runs the phases. A reboot or a
// crash resumes at the phase that did not finish; a phase failure is returned as a
// *workflow.PhaseError after the failure marker is written.
//
// A phase that failed on the runs before this one is retried only after a growing pause
// (RetryDelay), so a node whose problem outlasts a few quick retries stops hammering its
// mirrors and control plane; a dry run and `ksboot agent phase` neither wait nor count.
func Run(ctx context.Context, o Options) (*Identity, error) {
	return run(ctx, o, Phases())
}

// run is Run with the phases as a parameter, so tests can make a phase fail.
func run(ctx context.Context, o Options, phases []workflow.Phase[*Node]) (*Identity, error) {
	o = o.withDefaults()
	n, id, err := setup(ctx, o)
	if err != nil {
		return nil, err
	}
	backoff := !o.DryRun && o.Only == ""
	if backoff {
		if err := waitBeforeRetry(ctx, o, n.Status); err != nil {
			return id, err
		}
	}
	err = workflow.Run(ctx, phases, n, workflow.Options{
		Root: n.Root, Logger: o.Logger, Console: o.Console, Now: o.Now, Skip: o.Skip, Only: o.Only, Status: n.Status,
	})
	if !o.DryRun {
		if rerr := countFailure(ctx, o, n.Status, err, backoff); rerr != nil && err == nil {
			err = rerr
		} else if rerr != nil {
			o.Logger.Error("cannot record the failure for the retry back-off", "error", rerr)
		}
	}
	if err == nil && o.Only == "" {
		fmt.Fprintf(o.Console, "ksboot: node %s is bootstrapped\n", n.Name)
	}
	return id, err
}

// Bounds of the pause before a phase that keeps failing is retried.
const (
	RetryBase = 30 * time.Second
	RetryMax  = 10 * time.Minute
)

// RetryDelay is how long after its last failure a phase that failed on failures runs in a row
// is retried: at once after the first (the unit's RestartSec of 30 s is pause enough for a
// passing hiccup), then RetryBase doubled for each further failure (1 min, 2 min, 4 min, ...),
// at most RetryMax. Together with RestartSec the pause thus doubles from 30 s up to 10 min.
func RetryDelay(failures int) time.Duration {
	if failures <= 1 {
		return 0
	}
	d := RetryBase
	for i := 1; i < failures && d < RetryMax; i++ {
		d *= 2
	}
	return min(d, RetryMax)
}

// RetryWait is what is left of RetryDelay(failures) when since has passed since the failure:
// the unit's RestartSec, or a reboot, count toward the pause. A clock that went backwards (a
// node without a battery-backed clock before NTP) never makes the wait longer than the delay.
func RetryWait(failures int, since time.Duration) time.Duration {
	d := RetryDelay(failures)
	return min(d, max(d-since, 0))
}

// waitBeforeRetry pauses, when the phase that failed last time has failed on several runs in a
// row, for what is left of its RetryDelay, saying on the console what it waits for and why.
func waitBeforeRetry(ctx context.Context, o Options, st *state.Status) error {
	r := st.Retry
	if r == nil {
		return nil
	}
	wait := RetryWait(r.Failures, o.Now().Sub(r.Failed)).Round(time.Second)
	if wait <= 0 {
		return nil
	}
	o.Logger.InfoContext(ctx, "waiting before retrying a phase that keeps failing", "phase", r.Phase, "failures", r.Failures,
		"wait", wait.String(), "last_error", st.Error)
	fmt.Fprintf(o.Console, "ksboot: [%s] failed %d times in a row; retrying in %s (ksboot agent status shows why)\n", r.Phase, r.Failures, wait)
	if err := o.Sleep(ctx, wait); err != nil {
		return fmt.Errorf("waiting %s before retrying phase %s: %w", wait, r.Phase, err)
	}
	return nil
}

// countFailure records the outcome of a run for the back-off: one more failure of the phase
// that failed (unless the run was cut short by its context, which says nothing about the
// phase), or none once the run, or a `ksboot agent phase` of the failing phase, succeeded.
// Only runs that back off (count) add failures.
func countFailure(ctx context.Context, o Options, st *state.Status, runErr error, count bool) error {
	var pe *workflow.PhaseError
	switch {
	case errors.As(runErr, &pe):
		if !count || ctx.Err() != nil {
			return nil
		}
		st.RecordFailure(pe.Phase, o.Now())
	case runErr != nil || st.Retry == nil:
		return nil
	case o.Only != "" && o.Only != st.Retry.Phase:
		return nil
	default:
		st.Retry = nil
	}
	return state.Write(o.Root, st)
}

// setup reads the node config and status and measures the machine.
func setup(ctx context.Context, o Options) (*Node, *Identity, error) {
	root := host.Root(o.Root)
	nc, err := cluster.LoadNodeConfig(o.path(o.ConfigPath))
	if err != nil {
		return nil, nil, err
	}
	name, err := NodeName(nc, o.Root)
	if err != nil {
		return nil, nil, err
	}
	addrs, err := o.Interfaces()
	if err != nil {
		return nil, nil, fmt.Errorf("listing network addresses: %w", err)
	}
	id := &Identity{Cluster: nc.Cluster.Name(), Node: name, Roles: nc.Node.Roles, Init: nc.Node.Init, Addresses: addrs}
	o.Logger.InfoContext(ctx, "ksboot agent started", "version", o.Version, "cluster", id.Cluster, "node", id.Node,
		"roles", strings.Join(id.Roles, ","), "init", id.Init, "addresses", strings.Join(addrs, ","), "dry_run", o.DryRun)
	fmt.Fprintf(o.Console, "ksboot %s: node %s, role %s, cluster %s, addresses %s\n",
		o.Version, id.Node, strings.Join(id.Roles, "+"), id.Cluster, strings.Join(addrs, " "))
	st, err := state.Read(o.Root)
	if err != nil {
		return nil, nil, err
	}
	if st == nil {
		st = &state.Status{}
	}
	st.Version, st.Cluster, st.Node, st.Roles, st.Init, st.Addresses = o.Version, id.Cluster, id.Node, id.Roles, id.Init, addrs
	st.Updated = o.Now().UTC()
	if err := state.Write(o.Root, st); err != nil {
		return nil, nil, err
	}
	n := &Node{Config: nc, Name: name, Addresses: addrs, Root: root, Exec: o.Exec, DryRun: o.DryRun,
		Logger: o.Logger, Console: o.Console, Journal: o.Console, HTTP: o.HTTP, DiscoverTimeout: o.DiscoverTimeout,
		JoinOrderTimeout: o.JoinOrderTimeout, Status: st}
	if n.OS, err = host.ReadOS(root); err != nil {
		o.Logger.Warn("cannot identify the OS; preflight reports it", "error", err)
	}
	if o.DryRun {
		n.Arch = runtime.GOARCH
	} else if n.Arch, err = preflight.Arch(ctx, o.Exec); err != nil {
		return nil, nil, err
	}
	return n, id, nil
}

func (o Options) withDefaults() Options {
	if o.Root == "" {
		o.Root = "/"
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Console == nil {
		o.Console = io.Discard
	}
	if o.Exec == nil {
		if o.DryRun {
			o.Exec = &host.DryRun{Out: o.Console, Output: map[string]string{"timedatectl": "yes\n", "uname": "x86_64\n"}}
		} else {
			o.Exec = host.Real{}
		}
	}
	if o.Interfaces == nil {
		o.Interfaces = HostAddresses
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Sleep == nil {
		o.Sleep = sleep
	}
	return o
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// path resolves an absolute node path under the root.
func (o Options) path(p string) string {
	if filepath.IsAbs(p) && o.Root != "/" {
		return filepath.Join(o.Root, p)
	}
	return p
}

// NodeName is the node's name: the host name from the seed, or for a generic worker seed a name
// derived from /etc/machine-id ("worker-" + 10 hex digits of its hash), which is unique per
// machine, stable across reboots and a valid RFC 1123 label.
func NodeName(nc *cluster.NodeConfig, root string) (string, error) {
	if !nc.Node.Generic {
		return nc.Node.Name, nil
	}
	data, err := os.ReadFile(filepath.Join(root, "etc/machine-id"))
	if err != nil {
		return "", fmt.Errorf("deriving the node name of a generic worker: %w", err)
	}
	id := strings.TrimSpace(string(data))
	if id == "" {
		return "", fmt.Errorf("deriving the node name of a generic worker: %s is empty", filepath.Join(root, "etc/machine-id"))
	}
	sum := sha256.Sum256([]byte(id))
	return "worker-" + hex.EncodeToString(sum[:])[:10], nil
}

// HostAddresses lists the global unicast addresses of the machine in CIDR form, sorted.
func HostAddresses() ([]string, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, ifc := range ifaces {
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || !ipn.IP.IsGlobalUnicast() {
				continue
			}
			out = append(out, ipn.String())
		}
	}
	sort.Strings(out)
	return out, nil
}
