package cluster

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to the cluster decoder and validator: they must never panic,
// and every problem they report must name the file.
func FuzzDecode(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*/*.yaml")
	more, _ := filepath.Glob("testdata/*.yaml")
	for _, p := range append(seeds, more...) {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("a: &a [*a, *a]\nb: *a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, ps, err := Parse("fuzz.yaml", data)
		if err != nil && !IsInvalid(err) {
			t.Fatalf("unexpected error type %T: %v", err, err)
		}
		for _, p := range ps {
			if p.File != "fuzz.yaml" {
				t.Fatalf("problem without file: %+v", p)
			}
		}
		_, _ = ParseNodeConfig("fuzz.yaml", data)
		_, _, _ = FromKubeKey("fuzz.yaml", data)
	})
}
