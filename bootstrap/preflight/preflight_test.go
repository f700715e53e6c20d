package preflight

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/ksboot/ksboot/bootstrap/host"
	"github.com/ksboot/ksboot/bootstrap/host/hosttest"
)

type fakeNode struct {
	cpus     int
	memKB    int
	osID     string
	osVer    string
	resolv   string
	cgroupV2 bool
	foreign  string
}

func (f fakeNode) root(t *testing.T) host.Root {
	r := host.Root(t.TempDir())
	write := func(p, s string) {
		if _, err := r.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var cpu strings.Builder
	for i := 0; i < f.cpus; i++ {
		cpu.WriteString("processor\t: " + strconv.Itoa(i) + "\nmodel name\t: test\n\n")
	}
	write("/proc/cpuinfo", cpu.String())
	write("/proc/meminfo", "MemTotal:       "+strconv.Itoa(f.memKB)+" kB\nMemFree: 1 kB\n")
	write("/etc/os-release", "ID="+f.osID+"\nVERSION_ID=\""+f.osVer+"\"\nPRETTY_NAME=\""+f.osID+" "+f.osVer+"\"\n")
	write("/etc/resolv.conf", f.resolv)
	if f.cgroupV2 {
		write("/sys/fs/cgroup/cgroup.controllers", "cpu memory\n")
	}
	if f.foreign != "" {
		write(f.foreign, "#!/bin/sh\n")
	}
	return r
}

var good = fakeNode{cpus: 4, memKB: 8 << 20, osID: "debian", osVer: "12", resolv: "nameserver 10.0.0.1\n", cgroupV2: true}

func options(t *testing.T, f fakeNode, roles ...string) Options {
	stub := hosttest.NewStub(t)
	stub.Register(`^uname -m$`, "x86_64\n", nil)
	stub.Register(`^timedatectl show`, "yes\n", nil)
	return Options{
		Root: f.root(t), Exec: stub, NodeName: "node1", Roles: roles, KubernetesVersion: "v1.37.2",
		Listen: func(string) error { return nil },
		StatFS: func(string) (uint64, error) { return 100 << 30, nil },
	}
}

func TestGoodNodePasses(t *testing.T) {
	r, err := Run(context.Background(), options(t, good, "control-plane"))
	if err != nil {
		t.Fatalf("%v\n%+v", err, r)
	}
	if len(r) != 11 {
		t.Errorf("%d checks", len(r))
	}
}

func TestFailures(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*fakeNode, *Options)
		check  string
	}{
		{"one cpu", func(f *fakeNode, _ *Options) { f.cpus = 1 }, "cpu"},
		{"2 GiB", func(f *fakeNode, _ *Options) { f.memKB = 2 << 20 }, "memory"},
		{"small disk", func(_ *fakeNode, o *Options) { o.StatFS = func(string) (uint64, error) { return 10 << 30, nil } }, "disk"},
		{"old debian", func(f *fakeNode, _ *Options) { f.osVer = "9" }, "os"},
		{"arch linux", func(f *fakeNode, _ *Options) { f.osID = "arch" }, "os"},
		{"no nameserver", func(f *fakeNode, _ *Options) { f.resolv = "# none\n" }, "nameserver"},
		{"port busy", func(_ *fakeNode, o *Options) { o.Listen = func(string) error { return errors.New("in use") } }, "ports"},
		{"bad name", func(_ *fakeNode, o *Options) { o.NodeName = "Node_1" }, "hostname"},
		{"cgroup v1", func(f *fakeNode, _ *Options) { f.cgroupV2 = false }, "cgroup"},
		{"docker present", func(f *fakeNode, _ *Options) { f.foreign = "/usr/bin/dockerd" }, "existing-runtime"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := good
			o := Options{}
			tc.mutate(&f, &o)
			base := options(t, f, "control-plane")
			if o.StatFS != nil {
				base.StatFS = o.StatFS
			}
			if o.Listen != nil {
				base.Listen = o.Listen
			}
			if o.NodeName != "" {
				base.NodeName = o.NodeName
			}
			_, err := Run(context.Background(), base)
			var pe *Error
			if !errors.As(err, &pe) || len(pe.Failed) != 1 || pe.Failed[0].Check != tc.check {
				t.Fatalf("want exactly a %s failure, got %v", tc.check, err)
			}
			// The same failure as a warning does not fail the phase.
			base2 := options(t, f, "control-plane")
			base2.StatFS, base2.Listen, base2.NodeName = base.StatFS, base.Listen, base.NodeName
			base2.WarnOnly = []string{tc.check}
			if r, err := Run(context.Background(), base2); err != nil {
				t.Errorf("warnOnly %s still fails: %v %+v", tc.check, err, r)
			}
		})
	}
}

func TestTimeIsAWarningByDefault(t *testing.T) {
	stub := hosttest.NewStub(t)
	stub.Register(`^uname -m$`, "aarch64\n", nil)
	stub.Register(`^timedatectl show`, "no\n", nil)
	o := Options{Root: good.root(t), Exec: stub, NodeName: "w1", Roles: []string{"worker"}, KubernetesVersion: "v1.37.2",
		Listen: func(string) error { return nil }, StatFS: func(string) (uint64, error) { return 100 << 30, nil }}
	r, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range r {
		if x.Check == "time" && (!x.Warning || x.OK) {
			t.Errorf("time: %+v", x)
		}
		if x.Check == "arch" && x.Message != "arm64" {
			t.Errorf("arch: %+v", x)
		}
	}
	if p := Ports([]string{"worker"}); len(p) != 1 || p[0] != 10250 {
		t.Errorf("worker ports %v", p)
	}
}
