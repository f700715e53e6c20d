package install

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/ksboot/ksboot/bootstrap/host"
	"github.com/ksboot/ksboot/bootstrap/install/runtime"
	"github.com/ksboot/ksboot/bootstrap/workflow"
	"github.com/ksboot/ksboot/versions"
)

// check is one installed binary and how to ask its version.
type check struct {
	binary string
	want   string
	cmd    host.Cmd
	parse  func([]byte) string
}

// versionPattern finds a release version in a tool's output: 1.5.2, v1.37.2, 2.4.2+unknown,
// v1.38.0-rc.1.
var versionPattern = regexp.MustCompile(`\bv?\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?`)

// firstVersion is the first version in the output, or "unknown".
func firstVersion(out []byte) string {
	if v := versionPattern.Find(out); v != nil {
		return string(v)
	}
	return "unknown"
}

// kubectlVersion reads gitVersion from `kubectl version --client -o json`, which is stable
// where the text form has changed between releases.
func kubectlVersion(out []byte) string {
	var v struct {
		ClientVersion struct {
			GitVersion string `json:"gitVersion"`
		} `json:"clientVersion"`
	}
	if json.Unmarshal(out, &v) != nil || v.ClientVersion.GitVersion == "" {
		return firstVersion(out)
	}
	return v.ClientVersion.GitVersion
}

// sameRelease compares a found version with the wanted one, ignoring a leading "v" and build
// metadata: containerd built without release flags reports 2.4.2+unknown.
func sameRelease(found, want string) bool {
	core := func(v string) string {
		v, _, _ = strings.Cut(strings.TrimPrefix(v, "v"), "+")
		return v
	}
	return core(found) == core(want)
}

// Verify asks every installed binary for its version and compares it with what was asked for.
// It runs the binaries at the paths Binaries installed them to, so another kubeadm earlier on
// PATH (a distribution package) cannot satisfy it by accident. All mismatches are reported
// together: "kubelet: found v1.36.0, want v1.37.2; crictl: found unknown, want v1.37.0".
func Verify(ctx context.Context, o Options) error {
	o, err := o.prepare(ctx)
	if err != nil {
		return err
	}
	k8s := o.kubernetesVersion()
	m := versions.MustLookup(k8s)
	bin := func(name string, args ...string) host.Cmd { return host.Cmd{Name: path.Join(BinDir, name), Args: args} }
	checks := []check{
		{"kubeadm", k8s, bin("kubeadm", "version", "-o", "short"), firstVersion},
		{"kubelet", k8s, bin("kubelet", "--version"), firstVersion},
		{"kubectl", k8s, bin("kubectl", "version", "--client", "-o", "json"), kubectlVersion},
		{"containerd", m.Containerd, bin("containerd", "--version"), firstVersion},
		{"runc", m.Runc, host.Cmd{Name: path.Join(SbinDir, "runc"), Args: []string{"--version"}}, firstVersion},
		{"crictl", m.Crictl, bin("crictl", "--version"), firstVersion},
	}
	var problems, found []string
	for _, c := range checks {
		out, err := o.Exec.Run(ctx, c.cmd)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", c.binary, oneLine(err.Error())))
			continue
		}
		got := c.parse(out)
		if o.dryRun() {
			continue
		}
		if !sameRelease(got, c.want) {
			problems = append(problems, fmt.Sprintf("%s: found %s, want %s", c.binary, got, c.want))
			continue
		}
		found = append(found, c.binary+" "+got)
	}
	if len(problems) > 0 {
		return workflow.WithHint(fmt.Errorf("checking installed versions: %s", strings.Join(problems, "; ")),
			"another installation may be in the way, or the source holds other versions; remove "+StateDir+" and run the install phase again")
	}
	if o.dryRun() {
		o.say("verify: versions not checked in a dry run")
		return nil
	}
	o.Logger.Info("installed versions", "versions", strings.Join(found, ", "))
	o.say("verify: %s", joinNames(found))
	return nil
}

// criPoll is the pause between CRI checks (tests shorten it).
var criPoll = 2 * time.Second

// CRIReady asks containerd over the CRI socket, as kubelet will, whether its runtime is ready.
// containerd was just restarted, so a few refusals are expected; the wait is bounded.
func CRIReady(ctx context.Context, o Options) error {
	o, err := o.prepare(ctx)
	if err != nil {
		return err
	}
	if o.dryRun() {
		return nil
	}
	cmd := host.Cmd{Name: path.Join(BinDir, "crictl"), Args: []string{"--timeout", "10s", "info"}}
	var last string
	for attempt := 1; attempt <= 15; attempt++ {
		out, err := o.Exec.Run(ctx, cmd)
		if err == nil {
			var info struct {
				Status struct {
					Conditions []struct {
						Type   string `json:"type"`
						Status bool   `json:"status"`
					} `json:"conditions"`
				} `json:"status"`
			}
			if jerr := json.Unmarshal(out, &info); jerr != nil {
				last = "unreadable answer: " + jerr.Error()
			} else {
				for _, c := range info.Status.Conditions {
					if c.Type == "RuntimeReady" && c.Status {
						o.say("verify: containerd answers over CRI (crictl info: RuntimeReady)")
						return nil
					}
				}
				last = "RuntimeReady is not true yet"
			}
		} else {
			last = oneLine(err.Error())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(criPoll):
		}
	}
	return workflow.WithHint(fmt.Errorf("containerd does not answer over CRI (crictl info): %s", last),
		"see journalctl -u containerd; the configuration is "+runtime.ContainerdConfigPath)
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
