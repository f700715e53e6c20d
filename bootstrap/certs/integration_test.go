package certs_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/ksboot/ksboot/bootstrap/certs"
	"github.com/ksboot/ksboot/bootstrap/follow"
	"github.com/ksboot/ksboot/bootstrap/kubeadm"
	"github.com/ksboot/ksboot/test/apiserver"
	"github.com/ksboot/ksboot/test/testpki"
)

// fakeControlPlane is a control plane's certificates in memory: what certs.Read would read,
// and what kubeadm certs renew all would make of them.
type fakeControlPlane struct {
	mu     sync.Mutex
	list   []certs.Cert
	renews int
}

func (f *fakeControlPlane) read() ([]certs.Cert, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.list), nil
}

func (f *fakeControlPlane) renew(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.renews++
	for i := range f.list {
		if !f.list[i].CA {
			f.list[i].NotAfter = time.Now().Add(365 * 24 * time.Hour).UTC().Truncate(time.Second)
		}
	}
	return nil
}

func (f *fakeControlPlane) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.renews
}

// TestCertsThroughTheCluster: each control plane's agent, with its kubelet's identity under
// the real Node authorizer, reports its certificates on its Node and renews them when due or
// asked; `ksboot certs check-expiration` and `renew` work from a kubeconfig alone.
func TestCertsThroughTheCluster(t *testing.T) {
	s := apiserver.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cs := kubernetes.NewForConfigOrDie(s.Config)
	now := time.Now().UTC().Truncate(time.Second)
	ca := certs.Cert{Name: "ca", CA: true, NotAfter: now.Add(9 * 365 * 24 * time.Hour)}
	planes := map[string]*fakeControlPlane{
		"cp1": {list: []certs.Cert{{Name: "apiserver", NotAfter: now.Add(200 * 24 * time.Hour)}, ca}},
		"cp2": {list: []certs.Cert{{Name: "apiserver", NotAfter: now.Add(10 * 24 * time.Hour)}, ca}}, // due
	}
	for _, name := range []string{"cp1", "cp2", "cp3"} { // cp3 runs no agent
		if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name,
			Labels: map[string]string{"node-role.kubernetes.io/control-plane": ""}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var agents sync.WaitGroup
	defer agents.Wait()
	defer cancel()
	for name, f := range planes {
		kubeconfig := filepath.Join(t.TempDir(), "kubelet.conf")
		testpki.ClientKubeconfig(t, s.Secrets, s.URL, kubeconfig, "system:node:"+name, "system:nodes")
		agents.Add(1)
		go func() {
			defer agents.Done()
			err := follow.Follow(ctx, follow.Options{Node: name, Interval: 100 * time.Millisecond, CertsEvery: time.Hour,
				Client:    func() (kubernetes.Interface, error) { return kubeadm.ClientFromKubeconfig(kubeconfig) },
				Reset:     func(context.Context) error { t.Error("reset without a request"); return nil },
				ReadCerts: f.read, RenewCerts: f.renew})
			if err != nil {
				t.Errorf("agent of %s: %v", name, err)
			}
		}()
	}

	// Both agents report; cp2's certificates were due and are renewed without being asked.
	var reports []certs.NodeCerts
	deadline := time.Now().Add(30 * time.Second)
	for {
		var err error
		if reports, err = certs.Check(ctx, cs); err != nil {
			t.Fatal(err)
		}
		if len(reports) == 3 && reports[0].Problem == "" && reports[1].Problem == "" && planes["cp2"].count() == 1 &&
			reports[1].Certs[0].NotAfter.After(now.Add(300*24*time.Hour)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("reports after 30 s: %+v (cp2 renewals: %d)", reports, planes["cp2"].count())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if planes["cp1"].count() != 0 || !reports[0].Certs[0].NotAfter.Equal(now.Add(200*24*time.Hour)) {
		t.Errorf("cp1 (200 days left) renewed %d times, report %+v: want left alone", planes["cp1"].count(), reports[0])
	}
	if !strings.Contains(reports[2].Problem, "ksboot-agent") {
		t.Errorf("cp3 without an agent: %+v", reports[2])
	}
	var table strings.Builder
	certs.WriteTable(&table, reports, time.Now())
	t.Logf("check-expiration:\n%s", table.String())

	// certs renew asks each in name order and waits; cp3 never answers.
	var progress strings.Builder
	done, err := certs.RequestRenewal(ctx, cs, certs.RenewOptionsCluster{Wait: 3 * time.Second, Interval: 100 * time.Millisecond, Progress: &progress})
	t.Logf("renew:\n%s", progress.String())
	if !slices.Equal(done, []string{"cp1", "cp2"}) || err == nil || !strings.Contains(err.Error(), "cp3") {
		t.Errorf("renew: done %v, err %v; want cp1 and cp2, then cp3 named as not answering", done, err)
	}
	if planes["cp1"].count() != 1 || planes["cp2"].count() != 2 {
		t.Errorf("renewals: cp1 %d, cp2 %d; want one more each", planes["cp1"].count(), planes["cp2"].count())
	}
}
