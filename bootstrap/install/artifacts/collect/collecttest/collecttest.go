// Package collecttest runs a container registry for tests of bundle collection:
// go-containerregistry's in-memory registry on 127.0.0.1, which counts requests and can be told
// to lose images.
package collecttest

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Registry is a registry on a loopback port. go-containerregistry talks plain HTTP to loopback
// registries, as containerd does to one listed as insecure.
type Registry struct {
	// Host is "127.0.0.1:<port>": the registry part of image references.
	Host string
	mu   sync.Mutex
	hits map[string]int
	fail string
}

// NewRegistry starts a registry that stops with the test.
func NewRegistry(t testing.TB) *Registry {
	t.Helper()
	r := &Registry{hits: map[string]int{}}
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		// Count what reads or writes content (manifests, blobs), not version checks (/v2/).
		repo := req.URL.Path
		for _, sep := range []string{"/manifests/", "/blobs/"} {
			if i := strings.Index(repo, sep); i > 0 {
				repo = strings.TrimPrefix(repo[:i], "/v2/")
				break
			}
		}
		r.mu.Lock()
		if repo != req.URL.Path {
			r.hits[repo]++
		}
		fail := r.fail
		r.mu.Unlock()
		if fail != "" && strings.Contains(req.URL.Path, fail) && strings.Contains(req.URL.Path, "/manifests/") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			io.WriteString(w, `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}`)
			return
		}
		h.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r.Host = strings.TrimPrefix(srv.URL, "http://")
	return r
}

// Total counts manifest and blob requests for repositories whose name contains sub ("" for
// all).
func (r *Registry) Total(sub string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for repo, c := range r.hits {
		if strings.Contains(repo, sub) {
			n += c
		}
	}
	return n
}

// Fail makes the registry answer "manifest unknown" for paths containing sub; "" stops it.
func (r *Registry) Fail(sub string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fail = sub
}

// Push stores, under each reference, an index of one small random image per architecture
// (amd64, arm64), each with its platform in its config, as multi-architecture images are
// published.
func Push(t testing.TB, refs ...string) {
	t.Helper()
	for _, ref := range refs {
		idx := v1.ImageIndex(empty.Index)
		for _, arch := range []string{"amd64", "arm64"} {
			idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: Image(t, arch),
				Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
		}
		n, err := name.ParseReference(ref)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.WriteIndex(n, idx); err != nil {
			t.Fatalf("pushing %s: %v", ref, err)
		}
	}
}

// PushSingle stores one image for one architecture (no index) under ref.
func PushSingle(t testing.TB, ref, arch string) {
	t.Helper()
	n, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(n, Image(t, arch)); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
}

// Image is a small random linux/<arch> image of two layers.
func Image(t testing.TB, arch string) v1.Image {
	t.Helper()
	img, err := random.Image(512, 2)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", arch
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		t.Fatal(err)
	}
	return img
}
