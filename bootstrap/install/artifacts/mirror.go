package artifacts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/ksboot/ksboot/cluster"
)

// Upstream download sites. Mirrors keep their paths (see the package documentation).
const (
	kubernetesSite = "https://dl.k8s.io"
	githubSite     = "https://github.com"
)

// chinaPrefixes rewrite upstream URLs to the buckets KubeKey uses for KKZONE=cn. Order matters:
// the first matching prefix wins.
var chinaPrefixes = [][2]string{
	{kubernetesSite + "/", "https://kubernetes-release.pek3b.qingstor.com/"},
	{githubSite + "/containerd/", "https://kubernetes-release.pek3b.qingstor.com/containerd/"},
	{githubSite + "/opencontainers/", "https://kubernetes-release.pek3b.qingstor.com/opencontainers/"},
	{githubSite + "/kubernetes-sigs/cri-tools/", "https://kubernetes-release.pek3b.qingstor.com/cri-tools/"},
	{githubSite + "/containernetworking/plugins/", "https://containernetworking.pek3b.qingstor.com/plugins/"},
}

// Download limits. Every request is bounded by the client's timeout; these bound the bodies
// (the largest artifact, kubelet, is about 80 MB; checksum files are a few lines).
const (
	maxArtifactSize = 2 << 30
	maxChecksumSize = 1 << 20
)

// HTTPMirror downloads artifacts over HTTP(S) from the upstream release sites, KubeKey's China
// mirrors, or a mirror laid out like upstream, and takes each file's expected sha256 from the
// checksum file published next to it.
type HTTPMirror struct {
	// Base, when set, replaces https://dl.k8s.io and https://github.com in every URL: a mirror
	// keeps upstream's paths. It wins over Zone.
	Base string
	// Zone "cn" uses KubeKey's mirrors for mainland China.
	Zone string
	// Client makes the requests; nil means DefaultHTTPClient().
	Client *http.Client
	// Attempts is how often a request is tried when the server cannot be reached or answers
	// 5xx (not on 404); 0 means 3. Backoff is the first pause between tries, doubled each
	// time; 0 means 2s.
	Attempts int
	Backoff  time.Duration
}

// NewHTTPMirror returns the mirror a cluster's spec.artifacts and spec.zone select.
func NewHTTPMirror(spec cluster.Artifacts, zone string, client *http.Client) *HTTPMirror {
	return &HTTPMirror{Base: strings.TrimSuffix(spec.Mirror, "/"), Zone: zone, Client: client}
}

// defaultClient is shared so that downloads reuse connections.
var defaultClient = sync.OnceValue(DefaultHTTPClient)

// DefaultHTTPClient bounds every phase of a download: connecting, TLS, waiting for headers, and
// the whole transfer (kubelet over a slow link still fits in 20 minutes). Proxies come from the
// environment (HTTPS_PROXY, NO_PROXY), as for curl.
func DefaultHTTPClient() *http.Client {
	return &http.Client{
		Timeout: 20 * time.Minute,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   30 * time.Second,
			ResponseHeaderTimeout: time.Minute,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConnsPerHost:   4,
		},
	}
}

// UpstreamURLs are where upstream publishes an artifact and its checksum file.
func UpstreamURLs(a Artifact) (file, sums string, err error) {
	bare := strings.TrimPrefix(a.Version, "v")
	tag := "v" + bare
	gh := func(repo, name string) string {
		return fmt.Sprintf("%s/%s/releases/download/%s/%s", githubSite, repo, tag, name)
	}
	switch a.Name {
	case Kubeadm, Kubelet, Kubectl:
		file = fmt.Sprintf("%s/release/%s/bin/linux/%s/%s", kubernetesSite, tag, a.Arch, a.Name)
		return file, file + ".sha256", nil
	case Containerd:
		file = gh("containerd/containerd", fmt.Sprintf("containerd-%s-linux-%s.tar.gz", bare, a.Arch))
		return file, file + ".sha256sum", nil
	case Runc:
		// runc publishes one checksum file for all its assets.
		return gh("opencontainers/runc", "runc."+a.Arch), gh("opencontainers/runc", "runc.sha256sum"), nil
	case Crictl:
		file = gh("kubernetes-sigs/cri-tools", fmt.Sprintf("crictl-%s-linux-%s.tar.gz", tag, a.Arch))
		return file, file + ".sha256", nil
	case CNIPlugins:
		file = gh("containernetworking/plugins", fmt.Sprintf("cni-plugins-linux-%s-%s.tgz", a.Arch, tag))
		return file, file + ".sha256", nil
	}
	return "", "", fmt.Errorf("%w: no download location is known for %q", ErrNotFound, a.Name)
}

// URLs are where this mirror serves an artifact and its checksum file.
func (m *HTTPMirror) URLs(a Artifact) (file, sums string, err error) {
	file, sums, err = UpstreamURLs(a)
	if err != nil {
		return "", "", err
	}
	return m.rewrite(file), m.rewrite(sums), nil
}

func (m *HTTPMirror) rewrite(u string) string {
	if m.Base != "" {
		for _, site := range []string{kubernetesSite, githubSite} {
			if rest, ok := strings.CutPrefix(u, site); ok {
				return strings.TrimSuffix(m.Base, "/") + rest
			}
		}
		return u
	}
	if m.Zone == "cn" {
		for _, p := range chinaPrefixes {
			if rest, ok := strings.CutPrefix(u, p[0]); ok {
				return p[1] + rest
			}
		}
	}
	return u
}

// String names the mirror.
func (m *HTTPMirror) String() string {
	switch {
	case m.Base != "":
		return "mirror " + m.Base
	case m.Zone == "cn":
		return "zone cn mirrors (pek3b.qingstor.com)"
	}
	return "upstream release downloads (dl.k8s.io, github.com)"
}

// Location is the artifact's URL.
func (m *HTTPMirror) Location(a Artifact) string {
	if file, _, err := m.URLs(a); err == nil {
		return file
	}
	return m.String()
}

// Files: a mirror holds no packages or image archives.
func (m *HTTPMirror) Files(Kind) []Entry { return nil }

// LocalPath: a mirror has no local files.
func (m *HTTPMirror) LocalPath(e Entry) (string, error) {
	return "", fmt.Errorf("%s is not a local file of %s", e, m)
}

// Open fetches the checksum file, then starts the download.
func (m *HTTPMirror) Open(ctx context.Context, a Artifact) (*Blob, error) {
	file, sums, err := m.URLs(a)
	if err != nil {
		return nil, err
	}
	resp, err := m.get(ctx, sums)
	if err != nil {
		return nil, fmt.Errorf("fetching checksum %s: %w", sums, err)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxChecksumSize))
	resp.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("fetching checksum %s: %w", sums, err)
	}
	want, err := ParseChecksum(data, path.Base(file))
	if err != nil {
		return nil, fmt.Errorf("checksum file %s: %w", sums, err)
	}
	resp, err = m.get(ctx, file)
	if err != nil {
		return nil, err
	}
	return &Blob{Body: limitedBody{io.LimitReader(resp.Body, maxArtifactSize), resp.Body}, SHA256: want, Location: file}, nil
}

type limitedBody struct {
	io.Reader
	io.Closer
}

// get answers a 200 response or an error wrapping ErrNotFound or ErrUnreachable. Transient
// failures (no connection, 5xx) are retried a bounded number of times.
func (m *HTTPMirror) get(ctx context.Context, u string) (*http.Response, error) {
	client := m.Client
	if client == nil {
		client = defaultClient()
	}
	attempts, backoff := m.Attempts, m.Backoff
	if attempts <= 0 {
		attempts = 3
	}
	if backoff <= 0 {
		backoff = 2 * time.Second
	}
	var last error
	for attempt := 1; attempt <= attempts; attempt++ {
		if attempt > 1 {
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("%w (gave up after %d attempts: %w)", last, attempt-1, ctx.Err())
			case <-time.After(backoff):
			}
			backoff *= 2
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err // the URL is already in the message
			}
			last = fmt.Errorf("%w: %w", ErrUnreachable, err)
			if ctx.Err() != nil {
				return nil, last
			}
			continue
		}
		if resp.StatusCode == http.StatusOK {
			return resp, nil
		}
		resp.Body.Close()
		status := fmt.Errorf("HTTP %s", resp.Status)
		switch {
		case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
			return nil, fmt.Errorf("%w: %w", ErrNotFound, status)
		case resp.StatusCode >= 500:
			last = fmt.Errorf("%w: %w", ErrUnreachable, status)
		default:
			return nil, status
		}
	}
	return nil, last
}

// ParseChecksum finds a file's sha256 in a checksum file: either a bare digest, or
// sha256sum lines ("<digest>  <name>", "<digest> *<name>") of which the one naming file is
// used.
func ParseChecksum(data []byte, file string) (string, error) {
	var bare []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
		case len(f) == 1:
			bare = append(bare, strings.ToLower(f[0]))
		default:
			name := strings.TrimPrefix(f[len(f)-1], "*")
			if path.Base(name) == file && sha256Pattern.MatchString(strings.ToLower(f[0])) {
				return strings.ToLower(f[0]), nil
			}
		}
	}
	if len(bare) == 1 && sha256Pattern.MatchString(bare[0]) {
		return bare[0], nil
	}
	return "", fmt.Errorf("no sha256 for %s in it", file)
}
