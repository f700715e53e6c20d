package install

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestVerify(t *testing.T) {
	// The answers of real binaries; containerd and crictl built with `go install` (the test
	// VMs' binaries) report 2.4.2+unknown and, without -ldflags, "unknown".
	good := map[string]string{
		"kubeadm":    "v1.37.2\n",
		"kubelet":    "Kubernetes v1.37.2\n",
		"kubectl":    `{"clientVersion":{"major":"1","minor":"37","gitVersion":"v1.37.2","platform":"linux/amd64"},"kustomizeVersion":"v5.7.1"}`,
		"containerd": "containerd github.com/containerd/containerd/v2 2.4.2+unknown \n",
		"runc":       "runc version 1.5.2\ncommit: v1.5.2-0-gabc\nspec: 1.2.1\ngo: go1.26.8\nlibseccomp: 2.5.4\n",
		"crictl":     "crictl version v1.37.0\n",
	}
	patterns := map[string]string{
		"kubeadm":    `^/usr/local/bin/kubeadm version -o short$`,
		"kubelet":    `^/usr/local/bin/kubelet --version$`,
		"kubectl":    `^/usr/local/bin/kubectl version --client -o json$`,
		"containerd": `^/usr/local/bin/containerd --version$`,
		"runc":       `^/usr/local/sbin/runc --version$`,
		"crictl":     `^/usr/local/bin/crictl --version$`,
	}
	order := []string{"kubeadm", "kubelet", "kubectl", "containerd", "runc", "crictl"}
	tests := []struct {
		name    string
		answers map[string]string
		fail    string
		want    string
	}{
		{name: "all as asked"},
		{name: "old kubelet and unversioned crictl",
			answers: map[string]string{"kubelet": "Kubernetes v1.36.0\n", "crictl": "crictl version unknown\n"},
			want:    "checking installed versions: kubelet: found v1.36.0, want v1.37.2; crictl: found unknown, want v1.37.0"},
		{name: "binary missing", fail: "runc",
			want: `checking installed versions: runc: command "/usr/local/sbin/runc --version" failed: exit status 127: not found`},
		{name: "kubectl text output", answers: map[string]string{"kubectl": "Client Version: v1.37.2\nKustomize Version: v5.7.1\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			for _, b := range order {
				out := good[b]
				if a, ok := tt.answers[b]; ok {
					out = a
				}
				var err error
				if b == tt.fail {
					out, err = "not found", errors.New("exit status 127")
				}
				f.stub.Register(patterns[b], out, err)
			}
			err := Verify(context.Background(), f.opts)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(f.console.String(), "verify: kubeadm v1.37.2, kubelet v1.37.2, kubectl v1.37.2, containerd 2.4.2+unknown, runc 1.5.2, crictl v1.37.0") {
					t.Errorf("console %q", f.console.String())
				}
				return
			}
			checkOneLine(t, err, tt.want)
		})
	}
}

func TestPauseImage(t *testing.T) {
	tests := []struct{ version, repo, want string }{
		{"v1.24.17", "", "registry.k8s.io/pause:3.7"},
		{"v1.25.0", "", "registry.k8s.io/pause:3.8"},
		{"v1.26.5", "", "registry.k8s.io/pause:3.9"},
		{"v1.30.14", "", "registry.k8s.io/pause:3.9"},
		{"v1.31.0", "", "registry.k8s.io/pause:3.10"},
		{"v1.33.13", "", "registry.k8s.io/pause:3.10"},
		{"v1.34.0", "", "registry.k8s.io/pause:3.10.1"},
		{"v1.35.4", "", "registry.k8s.io/pause:3.10.1"},
		{"v1.36.0", "", "registry.k8s.io/pause:3.10.2"},
		{"v1.37.2", "", "registry.k8s.io/pause:3.10.2"},
		{"v1.37.2", "reg.example.com/kubesphereio/", "reg.example.com/kubesphereio/pause:3.10.2"},
		{"v1.40.0", "", "registry.k8s.io/pause:3.10.2"}, // newer than the table: newest known
		{"latest", "", "registry.k8s.io/pause:3.10.2"},
	}
	for _, tt := range tests {
		if got := PauseImage(tt.version, tt.repo); got != tt.want {
			t.Errorf("PauseImage(%q, %q) = %s, want %s", tt.version, tt.repo, got, tt.want)
		}
	}
}

func TestSameRelease(t *testing.T) {
	for _, tt := range []struct {
		found, want string
		same        bool
	}{
		{"v1.37.2", "v1.37.2", true},
		{"1.5.2", "v1.5.2", true},
		{"2.4.2+unknown", "v2.4.2", true},
		{"v1.37.2-rc.1", "v1.37.2", false},
		{"v1.37.20", "v1.37.2", false},
		{"unknown", "v1.37.0", false},
	} {
		if got := sameRelease(tt.found, tt.want); got != tt.same {
			t.Errorf("sameRelease(%q, %q) = %v", tt.found, tt.want, got)
		}
	}
}

func TestGoArch(t *testing.T) {
	for in, want := range map[string]string{"x86_64\n": "amd64", "aarch64": "arm64", "arm64": "arm64", "amd64": "amd64"} {
		if got, err := GoArch(in); err != nil || got != want {
			t.Errorf("GoArch(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := GoArch("riscv64"); err == nil {
		t.Error("riscv64 accepted")
	}
}

// TestVerifyCRINotReady: containerd installed at the right version but not answering over CRI
// fails the phase with the last answer and where to look.
func TestVerifyCRINotReady(t *testing.T) {
	defer func(d time.Duration) { criPoll = d }(criPoll)
	criPoll = time.Millisecond
	f := newFixture(t, nil)
	f.stub.Allow(`^/usr/local/bin/crictl --timeout 10s info$`, `{"status":{"conditions":[{"type":"RuntimeReady","status":false}]}}`)
	err := CRIReady(context.Background(), f.opts)
	if err == nil || !strings.Contains(err.Error(), "RuntimeReady is not true") {
		t.Fatalf("got %v", err)
	}
}
