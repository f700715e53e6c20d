package install

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/ksboot/ksboot/bootstrap/host"
	"github.com/ksboot/ksboot/bootstrap/host/hosttest"
	"github.com/ksboot/ksboot/bootstrap/install/artifacts"
	"github.com/ksboot/ksboot/bootstrap/install/artifacts/artifactstest"
	"github.com/ksboot/ksboot/cluster"
)

var (
	rocky9   = host.OS{ID: "rocky", IDLike: []string{"rhel", "centos", "fedora"}, VersionID: "9.3", Pretty: "Rocky Linux 9.3 (Blue Onyx)"}
	centos7  = host.OS{ID: "centos", IDLike: []string{"rhel", "fedora"}, VersionID: "7", Pretty: "CentOS Linux 7 (Core)"}
	sles15   = host.OS{ID: "sles", IDLike: []string{"suse"}, VersionID: "15.5", Pretty: "SUSE Linux Enterprise Server 15 SP5"}
	alpine   = host.OS{ID: "alpine", VersionID: "3.19", Pretty: "Alpine Linux v3.19"}
	errExit1 = errors.New("exit status 1")
)

// dpkgAnswer is dpkg-query's answer when only the given packages are installed: it prints the
// ones it knows and exits 1 if it does not know some.
func dpkgAnswer(installed ...string) (string, error) {
	var b strings.Builder
	for _, p := range installed {
		fmt.Fprintf(&b, "%s ii \n", p)
	}
	if len(installed) < len(RequiredPackages["debian"]) {
		return b.String(), errExit1
	}
	return b.String(), nil
}

// rpmAnswer is `rpm -q --whatprovides` when the named packages are missing.
func rpmAnswer(names []string, missing ...string) (string, error) {
	var b strings.Builder
	for _, n := range names {
		if slices.Contains(missing, n) {
			fmt.Fprintf(&b, "no package provides %s\n", n)
		} else {
			fmt.Fprintf(&b, "%s-1.0-1.el9.x86_64\n", n)
		}
	}
	if len(missing) > 0 {
		return b.String(), fmt.Errorf("exit status %d", len(missing))
	}
	return b.String(), nil
}

func without(list []string, drop ...string) []string {
	var out []string
	for _, l := range list {
		if !slices.Contains(drop, l) {
			out = append(out, l)
		}
	}
	return out
}

func deb(name, os string) artifactstest.Extra {
	dir := os
	if dir == "" {
		dir = "any"
	}
	return artifactstest.Extra{Entry: artifacts.Entry{Name: name, Version: "1.0-1", Arch: "amd64", Kind: artifacts.KindDeb, OS: os,
		Path: "packages/" + dir + "/" + name + "_1.0-1_amd64.deb"}, Data: []byte("deb " + name)}
}

func TestPackages(t *testing.T) {
	deb12 := RequiredPackages["debian"]
	rpms := RequiredPackages["rhel"]
	tests := []struct {
		name    string
		os      host.OS
		bundle  []artifactstest.Extra
		setup   func(f *fixture)
		wantErr []string
		console string
	}{
		{name: "debian, all installed", os: debian12,
			setup: func(f *fixture) {
				out, err := dpkgAnswer(deb12...)
				f.stub.Register(`^dpkg-query -W `, out, err)
			},
			console: "packages: socat, conntrack, ebtables, ipset, iptables, curl, openssl, tar already installed"},
		{name: "debian, two missing", os: debian12,
			setup: func(f *fixture) {
				out, err := dpkgAnswer(without(deb12, "socat", "ipset")...)
				f.stub.Register(`^dpkg-query -W `, out, err)
				f.stub.Register(`^apt-get update -o DPkg::Lock::Timeout=300$`, "", nil)
				f.stub.Register(`^apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=300 socat ipset$`, "", nil)
				out, err = dpkgAnswer(deb12...)
				f.stub.Register(`^dpkg-query -W `, out, err)
			},
			console: "packages: installed socat, ipset from apt-get repositories"},
		{name: "debian, apt fails", os: debian12,
			setup: func(f *fixture) {
				out, err := dpkgAnswer(without(deb12, "socat")...)
				f.stub.Register(`^dpkg-query -W `, out, err)
				f.stub.Register(`^apt-get update`, "", nil)
				f.stub.Register(`^apt-get install`, "E: Unable to locate package socat", errors.New("exit status 100"))
			},
			wantErr: []string{"installing socat from apt-get repositories: command \"apt-get install", "Unable to locate package socat"}},
		{name: "rocky with dnf", os: rocky9,
			setup: func(f *fixture) {
				f.root.WriteFile("/usr/bin/dnf", []byte("#!/bin/sh\n"), 0o755)
				out, err := rpmAnswer(rpms, "socat", "conntrack-tools")
				f.stub.Register(`^rpm -q --whatprovides socat conntrack-tools ebtables ipset iptables curl openssl tar$`, out, err)
				f.stub.Register(`^dnf install -y socat conntrack-tools$`, "", nil)
				out, err = rpmAnswer(rpms)
				f.stub.Register(`^rpm -q --whatprovides `, out, err)
			},
			console: "packages: installed socat, conntrack-tools from dnf repositories"},
		{name: "centos 7 with yum", os: centos7,
			setup: func(f *fixture) {
				out, err := rpmAnswer(rpms, "ipset")
				f.stub.Register(`^rpm -q --whatprovides `, out, err)
				f.stub.Register(`^yum install -y ipset$`, "", nil)
				out, err = rpmAnswer(rpms)
				f.stub.Register(`^rpm -q --whatprovides `, out, err)
			}},
		{name: "sles with zypper", os: sles15,
			setup: func(f *fixture) {
				out, err := rpmAnswer(RequiredPackages["suse"], "socat")
				f.stub.Register(`^rpm -q --whatprovides `, out, err)
				f.stub.Register(`^zypper --non-interactive install --no-recommends socat$`, "", nil)
				out, err = rpmAnswer(RequiredPackages["suse"])
				f.stub.Register(`^rpm -q --whatprovides `, out, err)
			}},
		{name: "package manager says yes but installs nothing", os: rocky9,
			setup: func(f *fixture) {
				f.root.WriteFile("/usr/bin/dnf", []byte("#!/bin/sh\n"), 0o755)
				out, err := rpmAnswer(rpms, "socat")
				f.stub.Register(`^rpm -q --whatprovides `, out, err)
				f.stub.Register(`^dnf install -y socat$`, "", nil)
				f.stub.Register(`^rpm -q --whatprovides `, out, err)
			},
			wantErr: []string{"installing socat from dnf repositories: not found: still not installed afterwards"}},
		{name: "bundle packages for this distribution only", os: debian12,
			bundle: []artifactstest.Extra{deb("socat", "debian-12"), deb("ipset", "debian-12"), deb("libipset13", "debian-12"), deb("socat", "ubuntu-22.04")},
			setup: func(f *fixture) {
				out, err := dpkgAnswer(without(deb12, "socat", "ipset")...)
				f.stub.Register(`^dpkg-query -W .* socat conntrack ebtables ipset iptables curl openssl tar$`, out, err)
				f.stub.Register(`^dpkg-query -W .* socat ipset libipset13$`, "", errExit1)
				f.stub.Register(`^apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=300 \S+/srv/bundle/packages/debian-12/socat_1.0-1_amd64.deb \S+/ipset_1.0-1_amd64.deb \S+/libipset13_1.0-1_amd64.deb$`, "", nil)
				out, err = dpkgAnswer(deb12...)
				f.stub.Register(`^dpkg-query -W `, out, err)
			},
			console: "packages: installed socat, ipset, libipset13 from bundle /srv/bundle"},
		{name: "bundle dependency already installed", os: debian12,
			bundle: []artifactstest.Extra{deb("socat", "debian-12"), deb("libwrap0", "")},
			setup: func(f *fixture) {
				out, err := dpkgAnswer(without(deb12, "socat")...)
				f.stub.Register(`^dpkg-query -W .* tar$`, out, err)
				f.stub.Register(`^dpkg-query -W .* socat libwrap0$`, "libwrap0 ii \n", errExit1)
				f.stub.Register(`^apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=300 \S+/socat_1.0-1_amd64.deb$`, "", nil)
				out, err = dpkgAnswer(deb12...)
				f.stub.Register(`^dpkg-query -W `, out, err)
			}},
		{name: "bundle lacks a package", os: debian12,
			bundle: []artifactstest.Extra{deb("socat", "debian-12")},
			setup: func(f *fixture) {
				out, err := dpkgAnswer(without(deb12, "socat", "ipset")...)
				f.stub.Register(`^dpkg-query -W `, out, err)
			},
			wantErr: []string{"installing ipset from bundle /srv/bundle: not found: the bundle has no ipset package for Debian GNU/Linux 12 (bookworm)"}},
		{name: "bundle package corrupt", os: debian12,
			bundle: []artifactstest.Extra{deb("socat", "debian-12")},
			setup: func(f *fixture) {
				os.WriteFile(f.root.Path("/srv/bundle/packages/debian-12/socat_1.0-1_amd64.deb"), []byte("bad"), 0o644)
				out, err := dpkgAnswer(without(deb12, "socat")...)
				f.stub.Register(`^dpkg-query -W .* tar$`, out, err)
				f.stub.Register(`^dpkg-query -W .* socat$`, "", errExit1)
			},
			wantErr: []string{"installing deb socat 1.0-1 (amd64) from /srv/bundle/packages/debian-12/socat_1.0-1_amd64.deb: sha256 mismatch"}},
		{name: "rpm bundle on rocky 9", os: rocky9,
			bundle: []artifactstest.Extra{
				{Entry: artifacts.Entry{Name: "socat", Version: "1.7.4.1-5.el9", Arch: "amd64", Kind: artifacts.KindRPM, OS: "rocky-9", Path: "packages/rocky-9/socat.rpm"}, Data: []byte("rpm")},
			},
			setup: func(f *fixture) {
				out, err := rpmAnswer(rpms, "socat")
				f.stub.Register(`^rpm -q --whatprovides socat conntrack-tools`, out, err)
				out, err = rpmAnswer([]string{"socat"}, "socat")
				f.stub.Register(`^rpm -q --whatprovides socat$`, out, err)
				f.stub.Register(`^rpm -U -v -h \S+/srv/bundle/packages/rocky-9/socat.rpm$`, "", nil)
				out, err = rpmAnswer(rpms)
				f.stub.Register(`^rpm -q --whatprovides `, out, err)
			}},
		{name: "bundle without packages falls back to the package manager", os: debian12,
			bundle: []artifactstest.Extra{deb("socat", "ubuntu-22.04")},
			setup: func(f *fixture) {
				out, err := dpkgAnswer(without(deb12, "socat")...)
				f.stub.Register(`^dpkg-query -W `, out, err)
				f.stub.Register(`^apt-get update`, "", nil)
				f.stub.Register(`^apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=300 socat$`, "", nil)
				out, err = dpkgAnswer(deb12...)
				f.stub.Register(`^dpkg-query -W `, out, err)
			}},
		{name: "unknown distribution", os: alpine,
			wantErr: []string{"installing packages: Alpine Linux v3.19 is not a Debian, Red Hat or SUSE distribution"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(c *cluster.Cluster) {
				if tt.bundle != nil {
					c.Spec.Artifacts.Bundle = "/srv/bundle"
				}
			})
			f.opts.OS = tt.os
			if tt.bundle != nil {
				artifactstest.WriteBundle(t, f.root.Path("/srv/bundle"), k8sVersion, nil, tt.bundle...)
			}
			if tt.setup != nil {
				tt.setup(f)
			}
			err := Packages(context.Background(), f.opts)
			if tt.wantErr != nil {
				checkOneLine(t, err, tt.wantErr...)
				for _, c := range f.stub.Calls {
					if strings.HasPrefix(c, "apt-get install") && strings.Contains(tt.name, "bundle") {
						t.Errorf("installed despite a bad bundle: %s", c)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.console != "" && !strings.Contains(f.console.String(), tt.console) {
				t.Errorf("console %q does not say %q", f.console.String(), tt.console)
			}
			if n := strings.Count(f.console.String(), "\n"); n != 1 {
				t.Errorf("console has %d lines, want 1: %q", n, f.console.String())
			}
		})
	}
}

// startFailure answers like host.Real when a program is not installed: exit code -1.
type startFailure struct{ stub *hosttest.Stub }

func (s startFailure) Run(ctx context.Context, c host.Cmd) ([]byte, error) {
	s.stub.Run(ctx, c)
	return nil, &host.RunError{Cmd: c.String(), ExitCode: -1, Err: os.ErrNotExist}
}

func TestPackagesQueryCannotRun(t *testing.T) {
	f := newFixture(t, nil)
	f.stub.Register(`^dpkg-query`, "", nil)
	f.opts.Exec = startFailure{f.stub}
	err := Packages(context.Background(), f.opts)
	if err == nil || !strings.Contains(err.Error(), "checking installed packages") {
		t.Fatalf("got %v", err)
	}
}
