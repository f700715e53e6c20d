package discovery

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/util/keyutil"

	"github.com/ksboot/ksboot/cluster"
)

// fastTuning shortens the search loop for tests; the logic is the same.
var fastTuning = tuning{
	firstWindow: 150 * time.Millisecond, maxWindow: 400 * time.Millisecond,
	firstGap: 50 * time.Millisecond, maxGap: 400 * time.Millisecond,
	dialTimeout: 2 * time.Second, progressEvery: 500 * time.Millisecond,
}

// syncBuffer collects log output from the code under test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testOptions(ca *testCA, logs *syncBuffer) Options {
	return Options{Cluster: "sample", CAPEM: ca.CertPEM, Pin: ca.Pin(), Timeout: 5 * time.Second,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), tune: fastTuning}
}

func TestFindStatic(t *testing.T) {
	ca := newTestCA(t, "kubernetes")
	foreign := newTestCA(t, "kubernetes") // same name, other key: what a second cluster looks like

	t.Run("server of the cluster CA", func(t *testing.T) {
		addr := startTLS(t, ca, certOpts{})
		var logs syncBuffer
		ep, err := FindStaticWith(context.Background(), addr, testOptions(ca, &logs))
		if err != nil {
			t.Fatal(err)
		}
		if ep.Address != addr || ep.Source != "static" || ep.CAPin != ca.Pin() || ep.Subject != "CN=kube-apiserver" {
			t.Errorf("endpoint %+v", ep)
		}
	})

	t.Run("plain FindStatic", func(t *testing.T) {
		addr := startTLS(t, ca, certOpts{})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := FindStatic(ctx, addr, ca.CertPEM); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("server of a foreign CA is refused", func(t *testing.T) {
		addr := startTLS(t, foreign, certOpts{})
		var logs syncBuffer
		opts := testOptions(ca, &logs)
		opts.Timeout = 1500 * time.Millisecond
		var rounds int
		opts.Progress = func(p Progress) {
			rounds = p.Round
			if len(p.Rejected) != 1 || p.Rejected[0].Addr != addr {
				t.Errorf("progress %d: rejected %v", p.Round, p.Rejected)
			}
		}
		_, err := FindStaticWith(context.Background(), addr, opts)
		var untrusted *UntrustedError
		var nf *NotFoundError
		switch {
		case err == nil:
			t.Fatal("a foreign CA's server was accepted")
		case !errors.As(err, &untrusted) || !errors.As(err, &nf):
			t.Fatalf("error %v: want an UntrustedError inside a NotFoundError", err)
		case !errors.Is(err, context.DeadlineExceeded):
			t.Errorf("error %v does not wrap the deadline", err)
		}
		for _, want := range []string{"waiting for the control plane at " + addr, "not signed by this cluster's CA", ca.Pin(), "not used"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error lacks %q:\n%v", want, err)
			}
		}
		if rounds < 2 {
			t.Errorf("only %d rounds in 1.5 s: no retry", rounds)
		}
		if n := strings.Count(logs.String(), "refused an API endpoint"); n != 1 {
			t.Errorf("the refusal was logged %d times, want once:\n%s", n, logs.String())
		}
		t.Logf("message a user sees: %v", err)
	})

	t.Run("server that appears late", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		cert, err := ca.serverCert([]net.IP{net.IPv4(127, 0, 0, 1)}, certOpts{})
		if err != nil {
			t.Fatal(err)
		}
		started := make(chan net.Listener, 1)
		go func() {
			time.Sleep(time.Second)
			l, err := serveTLS(addr, cert)
			if err != nil {
				t.Errorf("late server: %v", err)
			}
			started <- l
		}()
		t.Cleanup(func() {
			if l := <-started; l != nil {
				l.Close()
			}
		})
		var logs syncBuffer
		begin := time.Now()
		ep, err := FindStaticWith(context.Background(), addr, testOptions(ca, &logs))
		if err != nil {
			t.Fatal(err)
		}
		if took := time.Since(begin); took < time.Second || ep.Address != addr {
			t.Errorf("found %v after %v", ep, took)
		}
		if !strings.Contains(logs.String(), "still waiting for the API server at "+addr) {
			t.Errorf("no progress line while waiting:\n%s", logs.String())
		}
	})

	t.Run("client certificate is not a server", func(t *testing.T) {
		addr := startTLS(t, ca, certOpts{usage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		var logs syncBuffer
		opts := testOptions(ca, &logs)
		opts.Timeout = 500 * time.Millisecond
		_, err := FindStaticWith(context.Background(), addr, opts)
		if err == nil || !strings.Contains(err.Error(), "not a server certificate") {
			t.Fatalf("error = %v", err)
		}
	})

	t.Run("clock skew is named", func(t *testing.T) {
		addr := startTLS(t, ca, certOpts{notBefore: time.Now().Add(time.Hour), notAfter: time.Now().Add(2 * time.Hour)})
		var logs syncBuffer
		opts := testOptions(ca, &logs)
		opts.Timeout = 500 * time.Millisecond
		_, err := FindStaticWith(context.Background(), addr, opts)
		if err == nil || !strings.Contains(err.Error(), "clocks disagree") {
			t.Fatalf("error = %v", err)
		}
	})

	t.Run("not TLS at all", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				_, _ = c.Write([]byte("SSH-2.0-OpenSSH_9.2\r\n"))
				c.Close()
			}
		}()
		var logs syncBuffer
		opts := testOptions(ca, &logs)
		opts.Timeout = 500 * time.Millisecond
		_, err = FindStaticWith(context.Background(), ln.Addr().String(), opts)
		if err == nil || !strings.Contains(err.Error(), "is this a Kubernetes API server?") {
			t.Fatalf("error = %v", err)
		}
	})
}

func TestOptionsTrust(t *testing.T) {
	ca := newTestCA(t, "kubernetes")
	other := newTestCA(t, "kubernetes")
	for _, tc := range []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"ok", Options{CAPEM: ca.CertPEM, Pin: ca.Pin(), ID: ca.ID()}, ""},
		{"ok without pin", Options{CAPEM: ca.CertPEM}, ""},
		{"no CA", Options{}, "cluster CA certificate is required"},
		{"not PEM", Options{CAPEM: []byte("hello")}, "not PEM"},
		{"pin of another CA", Options{CAPEM: ca.CertPEM, Pin: other.Pin()}, "but the seed expects " + other.Pin()},
		{"id of another CA", Options{CAPEM: ca.CertPEM, ID: other.ID()}, "does not belong to the cluster CA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.opts.trust()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want %q", err, tc.wantErr)
			}
		})
	}
	t.Run("Find refuses before touching the network", func(t *testing.T) {
		_, err := Find(context.Background(), Options{Cluster: "sample", CAPEM: ca.CertPEM, Pin: other.Pin()})
		if err == nil || !strings.Contains(err.Error(), "rebuild the seed") {
			t.Fatalf("error = %v", err)
		}
	})
}

// TestStaticWithClusterSecrets uses the real secrets store: an RSA CA made the way build-seed
// makes it, and options built from a node config.
func TestStaticWithClusterSecrets(t *testing.T) {
	if testing.Short() {
		t.Skip("generates RSA keys; skipped under -short")
	}
	s, err := cluster.NewSecrets()
	if err != nil {
		t.Fatal(err)
	}
	pin, err := s.CAPin()
	if err != nil {
		t.Fatal(err)
	}
	key, err := keyutil.ParsePrivateKeyPEM(s.CAKey)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(s.CACert)
	caCert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	ca := &testCA{Cert: caCert, Key: key.(crypto.Signer), CertPEM: s.CACert}
	addr := startTLS(t, ca, certOpts{})

	nc := &cluster.NodeConfig{Node: cluster.NodeInfo{Name: "worker1", Roles: []string{cluster.RoleWorker}},
		Secrets: cluster.NodeSecrets{CACert: string(s.CACert), CACertHash: pin}}
	nc.Cluster.Metadata.Name = "sample"
	nc.Cluster.Spec.Discovery.Interface = "eth7"
	opts := OptionsFromNodeConfig(nc)
	if opts.Cluster != "sample" || opts.ID != cluster.ClusterID(pin) || opts.Pin != pin || opts.Interface != "eth7" || opts.IPv6 {
		t.Errorf("options from node config: %+v", opts)
	}
	var logs syncBuffer
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	opts.Timeout = 5 * time.Second
	ep, err := FindStaticWith(context.Background(), addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	if ep.CAPin != pin {
		t.Errorf("pin %s, want %s", ep.CAPin, pin)
	}
	if a := AnnouncementFromNodeConfig(nc); a.Node != "worker1" || a.Role != cluster.RoleWorker {
		t.Errorf("announcement %+v", a)
	}
}
