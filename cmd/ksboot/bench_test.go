package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// benchCluster writes a 100-host cluster file: one control plane, 99 workers.
func benchCluster(b *testing.B, dir string) string {
	var buf bytes.Buffer
	buf.WriteString("apiVersion: ksboot.dev/v1alpha1\nkind: Cluster\nmetadata: {name: bench}\nspec:\n  hosts:\n")
	for i := 1; i <= 100; i++ {
		fmt.Fprintf(&buf, "    - {name: h%03d, address: 10.20.%d.%d/16, gateway: 10.20.0.1, mac: \"52:54:00:20:%02x:%02x\"}\n", i, i/200, i%200+10, i/256, i%256)
	}
	buf.WriteString("  roleGroups:\n    etcd: [h001]\n    control-plane: [h001]\n    worker:\n      - h[002:100]\n")
	p := filepath.Join(dir, "bench.yaml")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		b.Fatal(err)
	}
	return p
}

// benchAgent is a stand-in for the ksboot binary of a realistic size (the release binary is
// about 11 MB); random bytes so no format can shrink it.
func benchAgent(b *testing.B, dir string) string {
	p := filepath.Join(dir, "agent")
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.CopyN(f, rand.Reader, 11<<20); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	return p
}

func dirBytes(b *testing.B, dir string) int64 {
	var n int64
	err := filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			n += info.Size()
		}
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// BenchmarkSeeds100 times build-seed for a 100-host cluster file against cloud-localds doing the
// same job in the same run. cloud-localds cannot put an agent binary on the medium, so it is run
// twice: with the seed files only (what it can do) and, through the same genisoimage call it makes,
// with the agent added (the same content ksboot writes). `make bench` prints the ratios.
func BenchmarkSeeds100(b *testing.B) {
	dir := b.TempDir()
	file := benchCluster(b, dir)
	agent := benchAgent(b, dir)
	secrets := filepath.Join(dir, "secrets")
	// The user-data tree doubles as the input for cloud-localds.
	tree := filepath.Join(dir, "tree")
	if code, _, errOut := benchRun("build-seed", "-f", file, "-o", tree, "--agent", agent, "--secrets", secrets,
		"--format", "user-data", "--agent-url", "http://10.20.0.1:8080/ksboot"); code != 0 {
		b.Fatal(errOut)
	}
	for _, format := range []string{"iso", "vfat", "user-data"} {
		b.Run("ksboot-"+format, func(b *testing.B) {
			var written int64
			for i := 0; i < b.N; i++ {
				out := filepath.Join(dir, fmt.Sprintf("out-%s-%d", format, i))
				args := []string{"build-seed", "-f", file, "-o", out, "--agent", agent, "--secrets", secrets, "--format", format}
				if format == "user-data" {
					args = append(args, "--agent-url", "http://10.20.0.1:8080/ksboot")
				}
				if code, _, errOut := benchRun(args...); code != 0 {
					b.Fatal(errOut)
				}
				b.StopTimer()
				written = dirBytes(b, out)
				_ = os.RemoveAll(out)
				b.StartTimer()
			}
			b.ReportMetric(float64(written)/(1<<20), "MB/op")
		})
	}
	localds, err := exec.LookPath("cloud-localds")
	if err != nil {
		b.Log("cloud-localds not installed (apt-get install cloud-image-utils): comparison skipped")
		return
	}
	hosts, _ := filepath.Glob(filepath.Join(tree, "h*"))
	b.Run("cloud-localds-iso", func(b *testing.B) {
		var written int64
		for i := 0; i < b.N; i++ {
			out := filepath.Join(dir, fmt.Sprintf("localds-%d", i))
			if err := os.MkdirAll(out, 0o755); err != nil {
				b.Fatal(err)
			}
			for _, h := range hosts {
				iso := filepath.Join(out, filepath.Base(h)+".iso")
				cmd := exec.Command(localds, "--network-config="+filepath.Join(h, "network-config"), iso,
					filepath.Join(h, "user-data"), filepath.Join(h, "meta-data"))
				if out, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("cloud-localds: %v\n%s", err, out)
				}
			}
			b.StopTimer()
			written = dirBytes(b, out)
			_ = os.RemoveAll(out)
			b.StartTimer()
		}
		b.ReportMetric(float64(written)/(1<<20), "MB/op")
	})
	b.Run("genisoimage-iso-with-agent", func(b *testing.B) {
		var written int64
		for i := 0; i < b.N; i++ {
			out := filepath.Join(dir, fmt.Sprintf("geniso-%d", i))
			if err := os.MkdirAll(out, 0o755); err != nil {
				b.Fatal(err)
			}
			for _, h := range hosts {
				iso := filepath.Join(out, filepath.Base(h)+".iso")
				cmd := exec.Command("genisoimage", "-quiet", "-output", iso, "-volid", "cidata", "-joliet", "-rock", "-graft-points",
					"user-data="+filepath.Join(h, "user-data"), "meta-data="+filepath.Join(h, "meta-data"),
					"network-config="+filepath.Join(h, "network-config"), "ksboot="+agent)
				if out, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("genisoimage: %v\n%s", err, out)
				}
			}
			b.StopTimer()
			written = dirBytes(b, out)
			_ = os.RemoveAll(out)
			b.StartTimer()
		}
		b.ReportMetric(float64(written)/(1<<20), "MB/op")
	})
}

func benchRun(args ...string) (int, string, string) {
	var out, errOut strings.Builder
	code := run(args, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}
