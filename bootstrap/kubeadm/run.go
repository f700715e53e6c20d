package kubeadm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/ksboot/ksboot/bootstrap/host"
	"github.com/ksboot/ksboot/bootstrap/workflow"
	"github.com/ksboot/ksboot/cluster"
)

// Node paths the runner reads and writes.
const (
	ConfigPath  = "/etc/ksboot/kubeadm.yaml"
	AdminConf   = "/etc/kubernetes/admin.conf"
	KubeletConf = "/etc/kubernetes/kubelet.conf"
	// ManifestsDir is the kubelet's staticPodPath, where kubeadm writes the control plane.
	ManifestsDir   = "/etc/kubernetes/manifests"
	APIServerManif = ManifestsDir + "/kube-apiserver.yaml"
	RootKubeconfig = "/root/.kube/config"
	// DoneMarker is written when kubeadm init or join has succeeded. kubeadm's own files are
	// no proof: a failed init leaves admin.conf and the static pod manifests behind.
	DoneMarker      = "/var/lib/ksboot/kubeadm.done"
	DefaultJoinWait = 30 * time.Minute
)

// RunOptions describe one kubeadm init or join on this node.
type RunOptions struct {
	Root    host.Root
	Exec    host.Runner
	Config  *cluster.NodeConfig
	Params  Params
	Logger  *slog.Logger
	Console io.Writer
	// Stream receives kubeadm's output as it runs (the journal).
	Stream io.Writer
	// IgnorePreflight lists kubeadm preflight checks to ignore (from spec.preflight.warnOnly).
	IgnorePreflight []string
	// JoinTimeout bounds the join retries while the API server is unreachable.
	JoinTimeout time.Duration
	// DryRun: commands are only printed, so nothing kubeadm would write appears afterwards.
	DryRun bool
	// Sleep waits between join attempts; nil means a context-aware time.Sleep.
	Sleep func(context.Context, time.Duration) error
	// Prepare, if set, runs right before every kubeadm init or join, after any kubeadm reset
	// (which empties /etc/kubernetes/manifests): the agent places the internal load balancer's
	// static pods with it, so that the kubelet kubeadm starts runs them.
	Prepare func(context.Context) error
	// Etcd, if set on a joining control plane, lets a failed join find and deal with an etcd
	// member kubeadm added but never started (see rescueEtcdMember).
	Etcd EtcdMembers
}

// IgnoredPreflightChecks maps ksboot's preflight check names to kubeadm's, so that a machine
// allowed to be small by spec.preflight.warnOnly passes kubeadm's own checks too.
func IgnoredPreflightChecks(warnOnly []string) []string {
	var out []string
	for _, w := range warnOnly {
		switch w {
		case "cpu":
			out = append(out, "NumCPU")
		case "memory":
			out = append(out, "Mem")
		case "cgroup":
			out = append(out, "SystemVerification")
		}
	}
	return out
}

// Run performs kubeadm init (Params.Role == RoleInit) or join, idempotently: a node that already
// holds the files kubeadm writes at the end is left alone.
func Run(ctx context.Context, o RunOptions) error {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Console == nil {
		o.Console = io.Discard
	}
	if o.JoinTimeout == 0 {
		o.JoinTimeout = DefaultJoinWait
	}
	if o.Sleep == nil {
		o.Sleep = func(ctx context.Context, d time.Duration) error {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(d):
				return nil
			}
		}
	}
	p := o.Params
	if o.Root.Exists(DoneMarker) {
		o.Logger.Info("this node already ran kubeadm; leaving it as it is", "role", string(p.Role))
		return copyAdminConf(o.Root, p.Role)
	}
	if f := leftover(o.Root); f != "" && !o.DryRun {
		// An earlier init or join failed or was cut short: start again from a clean node, as
		// kubeadm's own advice goes. The CA is placed again below.
		fmt.Fprintf(o.Console, "ksboot: an earlier kubeadm run did not finish (%s exists): kubeadm reset -f\n", f)
		if _, err := o.Exec.Run(ctx, host.Cmd{Name: "kubeadm", Args: []string{"reset", "-f", "--cri-socket", CRISocket}}); err != nil {
			return workflow.WithHint(fmt.Errorf("kubeadm reset after an unfinished kubeadm run: %w", err),
				"run `kubeadm reset -f` on this node and restart ksboot-bootstrap.service")
		}
	}
	cfg, err := Render(p)
	if err != nil {
		return err
	}
	// The config holds the bootstrap token: 0600 like the node config.
	if _, err := o.Root.WriteFile(ConfigPath, cfg, 0o600); err != nil {
		return err
	}
	if err := WritePatches(o.Root, p); err != nil {
		return err
	}
	if p.Role == RoleInit {
		if err := writePKI(o); err != nil {
			return err
		}
		if err := o.prepare(ctx); err != nil {
			return err
		}
		args := []string{"init", "--config", ConfigPath, "--skip-token-print"}
		args = append(args, ignoreFlag(o.IgnorePreflight)...)
		fmt.Fprintln(o.Console, "ksboot: kubeadm init (this takes a few minutes)")
		if _, err := o.Exec.Run(ctx, host.Cmd{Name: "kubeadm", Args: args, Stream: o.Stream}); err != nil {
			hint := "read the kubeadm output above (journalctl -u ksboot-bootstrap); the agent retries after `kubeadm reset -f`"
			if refused := refusedManifests(ctx, o.Exec); refused != "" {
				hint = refused + "; " + hint
			}
			return workflow.WithHint(fmt.Errorf("kubeadm init: %w", err), hint)
		}
		if o.DryRun {
			return nil
		}
		return finished(o.Root, p.Role)
	}
	return join(ctx, o)
}

// finished records a successful kubeadm run and gives root its kubeconfig.
func finished(root host.Root, role Role) error {
	if _, err := root.WriteFile(DoneMarker, []byte(string(role)+"\n"), 0o600); err != nil {
		return err
	}
	return copyAdminConf(root, role)
}

// prepare runs the Prepare hook, if any.
func (o RunOptions) prepare(ctx context.Context) error {
	if o.Prepare == nil {
		return nil
	}
	return o.Prepare(ctx)
}

func writePKI(o RunOptions) error {
	if o.Config == nil || !o.Config.Node.IsControlPlane() {
		return nil
	}
	if _, err := WritePKI(o.Root.Path("/"), o.Config.Secrets); err != nil {
		return err
	}
	return nil
}

func ignoreFlag(checks []string) []string {
	if len(checks) == 0 {
		return nil
	}
	return []string{"--ignore-preflight-errors=" + strings.Join(checks, ",")}
}

// leftover names a file that kubeadm init or join writes, if one exists.
func leftover(root host.Root) string {
	for _, f := range []string{AdminConf, KubeletConf, APIServerManif, ManifestsDir + "/etcd.yaml", "/etc/kubernetes/bootstrap-kubelet.conf"} {
		if root.Exists(f) {
			return f
		}
	}
	return ""
}

// copyAdminConf gives root a kubeconfig on control planes, as kubeadm's guide asks users to.
func copyAdminConf(root host.Root, role Role) error {
	if role == RoleWorker {
		return nil
	}
	data, err := root.ReadFile(AdminConf)
	if err != nil {
		return fmt.Errorf("reading %s after kubeadm: %w", AdminConf, err)
	}
	_, err = root.WriteFile(RootKubeconfig, data, 0o600)
	return err
}

// kubeletRefused is the kubelet's log line for a static pod manifest it will not run.
var kubeletRefused = regexp.MustCompile(`Could not process manifest file" err="((?:[^"\\]|\\.)*)" path="([^"]*)"`)

// refusedManifests reads the kubelet's journal for static pod manifests it refused to run, the
// reason a control plane never comes up while kubeadm only reports a timeout. A patch in
// spec.kubernetes.patches that sets a probe this release's manifest does not have (kubeadm
// v1.26 gives etcd and kube-scheduler no readiness probe) makes a probe without a handler,
// which the kubelet refuses. It returns "" when nothing was refused or the journal cannot be
// read.
func refusedManifests(ctx context.Context, r host.Runner) string {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
	defer cancel()
	out, err := r.Run(ctx, host.Cmd{Name: "journalctl", Args: []string{"-u", "kubelet", "--no-pager", "-o", "cat", "-n", "3000"}})
	if err != nil {
		return ""
	}
	seen := map[string]string{}
	var paths []string
	for _, m := range kubeletRefused.FindAllStringSubmatch(string(out), -1) {
		if _, ok := seen[m[2]]; !ok {
			paths = append(paths, m[2])
		}
		seen[m[2]] = strings.ReplaceAll(m[1], `\"`, `"`)
	}
	if len(paths) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("the kubelet refused to run ")
	for i, p := range paths {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s (%s)", p, seen[p])
	}
	b.WriteString(": a patch in spec.kubernetes.patches may set a probe or field this Kubernetes release's manifest does not have (see /etc/kubernetes/manifests)")
	return b.String()
}

// joinFailure classifies kubeadm join output. Fatal problems stop at once with advice; anything
// else (API not up yet, network) is retried.
func joinFailure(output string) (fatal bool, hint string) {
	out := strings.ToLower(output)
	switch {
	case strings.Contains(out, "public key") && (strings.Contains(out, "pin") || strings.Contains(out, "hash")),
		strings.Contains(out, "cluster ca found in cluster-info") && strings.Contains(out, "invalid"),
		strings.Contains(out, "none of the public keys"):
		return true, "the API server's CA does not match the CA pin in this node's seed: this seed belongs to another cluster " +
			"(rebuild it with the cluster's secrets directory)"
	case strings.Contains(out, "could not find a jws signature"),
		strings.Contains(out, "token id") && strings.Contains(out, "invalid"),
		strings.Contains(out, "unauthorized") && strings.Contains(out, "cluster-info"):
		return true, "the bootstrap token in this seed is unknown to the cluster: it was rotated (ksboot token rotate) or " +
			"expired; rebuild the seed with the cluster's secrets directory (ksboot build-seed), which holds the current token"
	}
	return false, ""
}

func join(ctx context.Context, o RunOptions) error {
	ctx, cancel := context.WithTimeout(ctx, o.JoinTimeout)
	defer cancel()
	full := append([]string{"join", "--config", ConfigPath}, ignoreFlag(o.IgnorePreflight)...)
	args, finishing := full, false
	delay := 5 * time.Second
	var last error
	for attempt := 1; attempt <= 200; attempt++ {
		if !finishing {
			if err := writePKI(o); err != nil {
				return err
			}
			if err := o.prepare(ctx); err != nil {
				return err
			}
		}
		what := "kubeadm join"
		if finishing {
			what = "the rest of kubeadm join"
		}
		fmt.Fprintf(o.Console, "ksboot: %s %s (attempt %d)\n", what, o.Params.APIServerEndpoint, attempt)
		out, err := o.Exec.Run(ctx, host.Cmd{Name: "kubeadm", Args: args, Stream: o.Stream})
		if err == nil {
			if o.DryRun {
				return nil
			}
			return finished(o.Root, o.Params.Role)
		}
		output := string(out)
		var re *host.RunError
		if errors.As(err, &re) {
			output += string(re.Output)
		}
		if fatal, hint := joinFailure(output); fatal {
			return workflow.WithHint(fmt.Errorf("kubeadm join %s: %w", o.Params.APIServerEndpoint, err), hint)
		}
		last = err
		switch {
		case finishing:
			o.Logger.Warn("finishing kubeadm join failed; retrying", "attempt", attempt, "in", delay.String(), "error", firstLineOf(err.Error()))
		case memberJoined(o) || rescueEtcdMember(ctx, o):
			// This node's etcd member is in the cluster and runs here: a reset would take it
			// away (kubeadm reset cannot remove it while the API is down), and with two
			// members that is the cluster's quorum. The rest of the join is finished instead.
			fmt.Fprintf(o.Console, "ksboot: this node's etcd member is in the cluster: finishing the join without a reset\n")
			args, finishing = finishArgs, true
		default:
			o.Logger.Warn("kubeadm join failed; retrying", "attempt", attempt, "in", delay.String(), "error", firstLineOf(err.Error()))
			// A failed join can leave half-written files that make the next attempt's preflight fail.
			if _, rerr := o.Exec.Run(ctx, host.Cmd{Name: "kubeadm", Args: []string{"reset", "-f", "--cri-socket", CRISocket}}); rerr != nil {
				o.Logger.Warn("kubeadm reset after a failed join failed", "error", firstLineOf(rerr.Error()))
			}
		}
		if err := o.Sleep(ctx, delay); err != nil {
			break
		}
		delay = min(delay*2, time.Minute)
	}
	return workflow.WithHint(fmt.Errorf("kubeadm join %s did not succeed within %s: %w", o.Params.APIServerEndpoint, o.JoinTimeout, last),
		"check that this machine reaches the control plane (ksboot discover --config /etc/ksboot/node.yaml)")
}

func firstLineOf(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// RoleFor returns the kubeadm role of a node that found (or did not find) a running cluster.
// An init node that finds its cluster already answering joins it instead: a reinstalled first
// control plane never starts a second cluster.
func RoleFor(nc *cluster.NodeConfig, clusterExists bool) Role {
	switch {
	case nc.Node.Init && !clusterExists:
		return RoleInit
	case slices.Contains(nc.Node.Roles, cluster.RoleControlPlane):
		return RoleControlPlane
	}
	return RoleWorker
}
