package apiserver

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/keyutil"

	"github.com/ksboot/ksboot/cluster"
	"github.com/ksboot/ksboot/test/k8sbin"
)

const (
	// ServiceCIDR is the API server's --service-cluster-ip-range.
	ServiceCIDR = "10.96.0.0/12"
	// readyTimeout bounds the wait for /readyz; the measured start is 4–10 s.
	readyTimeout = 90 * time.Second
	// etcdTimeout bounds the wait for etcd's /health.
	etcdTimeout = 30 * time.Second
	// stopGrace is how long a process may take to exit after SIGTERM before SIGKILL.
	stopGrace = 10 * time.Second
	// attempts bounds restarts after a port was taken between picking and binding it.
	attempts = 3
)

// Server is a running etcd + kube-apiserver.
type Server struct {
	// Config reaches the API server as a member of system:masters.
	Config *rest.Config
	// Kubeconfig is the path of a kubeconfig file with the same credentials.
	Kubeconfig string
	// URL is the API server's https URL.
	URL string
	// EtcdURL is etcd's client URL, https on loopback. As kubeadm's stacked etcd, it asks for
	// a client certificate signed by the etcd CA in Secrets (EtcdCACert, EtcdCAKey), and its
	// serving certificate, for 127.0.0.1, is signed by that CA too.
	EtcdURL string
	// Dir holds certificates, data and the logs (etcd.log, kube-apiserver.log).
	Dir string
	// Secrets is the cluster key material the certificates were made from.
	Secrets *cluster.Secrets
	// StartupTime is how long etcd and the API server took to be ready.
	StartupTime time.Duration
}

// Start starts etcd and kube-apiserver for the test and stops them when it ends. It skips
// the test under -short or when the binaries cannot be had.
func Start(t testing.TB) *Server {
	t.Helper()
	if testing.Short() {
		t.Skip("apiserver: starts a real etcd and kube-apiserver; skipped with -short")
	}
	etcdBin := k8sbin.Etcd(t)
	apiBin := k8sbin.KubeAPIServer(t)
	dir := t.TempDir()

	secrets, err := cluster.NewSecrets()
	if err != nil {
		t.Fatalf("apiserver: %v", err)
	}
	pki, err := writePKI(filepath.Join(dir, "pki"), secrets)
	if err != nil {
		t.Fatalf("apiserver: %v", err)
	}

	var lastErr error
	for attempt := 1; attempt <= attempts; attempt++ {
		s, err := start(t, dir, attempt, etcdBin, apiBin, secrets, pki)
		if err == nil {
			t.Logf("apiserver: etcd and kube-apiserver %s ready at %s in %s", k8sbin.Version, s.URL, s.StartupTime.Round(time.Millisecond))
			return s
		}
		lastErr = err
		if !errors.Is(err, errPortTaken) {
			break
		}
		t.Logf("apiserver: attempt %d: %v; retrying with new ports", attempt, err)
	}
	t.Fatalf("apiserver: %v", lastErr)
	return nil
}

var errPortTaken = errors.New("a port was taken before the server bound it")

type pkiFiles struct {
	caCert, serverCert, serverKey, saKey, saPub string
	clientCert, clientKey, caPEM                []byte
	// etcd's CA, serving pair, and the API server's client pair for etcd (files), and a
	// client pair for the harness's own health check (in memory).
	etcdCA, etcdServerCert, etcdServerKey, etcdClientCert, etcdClientKey string
	etcdCheckCert, etcdCheckKey, etcdCAPEM                               []byte
}

// writePKI writes the API server's certificates, signed by the secrets' cluster CA.
func writePKI(dir string, s *cluster.Secrets) (*pkiFiles, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ca, caKey, err := parseCA(s.CACert, s.CAKey)
	if err != nil {
		return nil, err
	}
	serverCert, serverKey, err := signCert(ca, caKey, x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		DNSNames:    []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return nil, fmt.Errorf("signing the serving certificate: %w", err)
	}
	clientCert, clientKey, err := signCert(ca, caKey, x509.Certificate{
		Subject:     pkix.Name{CommonName: "ksboot-test-admin", Organization: []string{"system:masters"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, fmt.Errorf("signing the client certificate: %w", err)
	}
	// etcd as kubeadm runs it: TLS on the client port, client certificates of the etcd CA.
	etcdCA, etcdCAKey, err := parseCA(s.EtcdCACert, s.EtcdCAKey)
	if err != nil {
		return nil, fmt.Errorf("etcd CA: %w", err)
	}
	etcdServerCert, etcdServerKey, err := signCert(etcdCA, etcdCAKey, x509.Certificate{
		Subject:     pkix.Name{CommonName: "etcd-server"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, fmt.Errorf("signing etcd's serving certificate: %w", err)
	}
	etcdClientCert, etcdClientKey, err := signCert(etcdCA, etcdCAKey, x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver-etcd-client"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, fmt.Errorf("signing the API server's etcd client certificate: %w", err)
	}
	etcdCheckCert, etcdCheckKey, err := signCert(etcdCA, etcdCAKey, x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-etcd-healthcheck-client"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, fmt.Errorf("signing the etcd health-check client certificate: %w", err)
	}
	f := &pkiFiles{
		caCert: filepath.Join(dir, "ca.crt"), serverCert: filepath.Join(dir, "apiserver.crt"),
		serverKey: filepath.Join(dir, "apiserver.key"), saKey: filepath.Join(dir, "sa.key"), saPub: filepath.Join(dir, "sa.pub"),
		clientCert: clientCert, clientKey: clientKey, caPEM: s.CACert,
		etcdCA: filepath.Join(dir, "etcd-ca.crt"), etcdServerCert: filepath.Join(dir, "etcd-server.crt"),
		etcdServerKey: filepath.Join(dir, "etcd-server.key"), etcdClientCert: filepath.Join(dir, "apiserver-etcd-client.crt"),
		etcdClientKey: filepath.Join(dir, "apiserver-etcd-client.key"),
		etcdCheckCert: etcdCheckCert, etcdCheckKey: etcdCheckKey, etcdCAPEM: s.EtcdCACert,
	}
	for path, data := range map[string][]byte{
		f.caCert: s.CACert, f.serverCert: serverCert, f.serverKey: serverKey,
		f.saKey: s.ServiceAccountKey, f.saPub: s.ServiceAccountPub,
		f.etcdCA: s.EtcdCACert, f.etcdServerCert: etcdServerCert, f.etcdServerKey: etcdServerKey,
		f.etcdClientCert: etcdClientCert, f.etcdClientKey: etcdClientKey,
	} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return nil, err
		}
	}
	return f, nil
}

func parseCA(certPEM, keyPEM []byte) (*x509.Certificate, crypto.Signer, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return nil, nil, errors.New("cluster CA: no PEM certificate")
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster CA: %w", err)
	}
	key, err := keyutil.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("cluster CA key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, nil, errors.New("cluster CA key cannot sign")
	}
	return ca, signer, nil
}

func signCert(ca *x509.Certificate, caKey crypto.Signer, tmpl x509.Certificate) (certPEM, keyPEM []byte, err error) {
	// P-256 keys are made in microseconds; RSA would add seconds to every start.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// start runs one attempt: etcd, then the API server, each waited for. A failed attempt stops
// what it started at once rather than at the end of the test, so a retry starts clean.
func start(t testing.TB, dir string, attempt int, etcdBin, apiBin string, secrets *cluster.Secrets, pki *pkiFiles) (_ *Server, err error) {
	began := time.Now()
	var started []*process
	defer func() {
		if err != nil {
			for i := len(started) - 1; i >= 0; i-- {
				started[i].stop(t)
			}
		}
	}()
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	clientPort, peerPort, apiPort := ports[0], ports[1], ports[2]
	etcdURL := "https://127.0.0.1:" + strconv.Itoa(clientPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	suffix := ""
	if attempt > 1 {
		suffix = "-" + strconv.Itoa(attempt)
	}

	etcd, err := startProcess(t, filepath.Join(dir, "etcd"+suffix+".log"), etcdBin,
		"--name=default",
		"--data-dir="+filepath.Join(dir, "etcd-data"+suffix),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=default="+peerURL,
		"--cert-file="+pki.etcdServerCert, "--key-file="+pki.etcdServerKey,
		"--client-cert-auth=true", "--trusted-ca-file="+pki.etcdCA,
		// Test data needs no durability; fsync makes every write wait on the disk.
		"--unsafe-no-fsync=true",
		"--log-level=warn",
	)
	if err != nil {
		return nil, err
	}
	started = append(started, etcd)
	etcdClient, err := tlsClient(pki.etcdCAPEM, pki.etcdCheckCert, pki.etcdCheckKey)
	if err != nil {
		return nil, fmt.Errorf("etcd health check: %w", err)
	}
	if err := waitFor(etcd, "etcd /health at "+etcdURL, etcdTimeout, func() (bool, string) {
		resp, err := etcdClient.Get(etcdURL + "/health")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK && bytes.Contains(body, []byte(`"health":"true"`)), string(body)
	}); err != nil {
		return nil, err
	}

	api, err := startProcess(t, filepath.Join(dir, "kube-apiserver"+suffix+".log"), apiBin,
		"--bind-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(apiPort),
		// A loopback advertise address is refused by the endpoint reconciler.
		"--advertise-address=127.0.0.1",
		"--endpoint-reconciler-type=none",
		"--etcd-servers="+etcdURL,
		"--etcd-cafile="+pki.etcdCA, "--etcd-certfile="+pki.etcdClientCert, "--etcd-keyfile="+pki.etcdClientKey,
		"--service-cluster-ip-range="+ServiceCIDR,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+pki.saPub,
		"--service-account-signing-key-file="+pki.saKey,
		"--client-ca-file="+pki.caCert,
		"--tls-cert-file="+pki.serverCert,
		"--tls-private-key-file="+pki.serverKey,
		"--authorization-mode=Node,RBAC",
		// As kubeadm sets it: a kubelet's identity may change only its own Node, its own
		// pods and its own Lease in kube-node-lease.
		"--enable-admission-plugins=NodeRestriction",
		// As kubeadm sets it: bootstrap tokens authenticate joining nodes (kubeadm join
		// against this server in bootstrap/kubeadm's tests).
		"--enable-bootstrap-token-auth=true",
		"--allow-privileged=true",
		"--cert-dir="+filepath.Join(dir, "cert-dir"),
	)
	if err != nil {
		return nil, err
	}
	started = append(started, api)
	url := "https://127.0.0.1:" + strconv.Itoa(apiPort)
	cfg := &rest.Config{
		Host: url,
		TLSClientConfig: rest.TLSClientConfig{
			CAData: pki.caPEM, CertData: pki.clientCert, KeyData: pki.clientKey,
		},
		// Tests apply dozens of objects; client-go's default of 5 QPS would throttle them.
		QPS: 100, Burst: 200,
	}
	httpClient, err := tlsClient(pki.caPEM, pki.clientCert, pki.clientKey)
	if err != nil {
		return nil, err
	}
	if err := waitFor(api, "kube-apiserver /readyz at "+url, readyTimeout, func() (bool, string) {
		resp, err := httpClient.Get(url + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK, fmt.Sprintf("%s: %s", resp.Status, lastLines(body, 5))
	}); err != nil {
		return nil, err
	}
	kubeconfig := filepath.Join(dir, "admin.conf")
	if err := writeKubeconfig(kubeconfig, cfg); err != nil {
		return nil, err
	}
	return &Server{
		Config: cfg, Kubeconfig: kubeconfig, URL: url, EtcdURL: etcdURL, Dir: dir,
		Secrets: secrets, StartupTime: time.Since(began),
	}, nil
}

// tlsClient is an HTTP client that trusts caPEM and presents the client pair.
func tlsClient(caPEM, certPEM, keyPEM []byte) (*http.Client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("CA: no certificate for the pool")
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("client certificate: %w", err)
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}},
	}}, nil
}

func writeKubeconfig(path string, cfg *rest.Config) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["ksboot-test"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData}
	kc.Contexts["admin@ksboot-test"] = &clientcmdapi.Context{Cluster: "ksboot-test", AuthInfo: "admin"}
	kc.CurrentContext = "admin@ksboot-test"
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// freePorts asks the kernel for n distinct free loopback ports. They are released before the
// servers bind them, so another process may take one meanwhile; Start retries when that
// happens.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("picking a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// process is a started server.
type process struct {
	name string
	log  string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, valid after done
}

// startProcess starts bin in its own process group with output to logPath, and registers
// its stop with t.Cleanup.
func startProcess(t testing.TB, logPath, bin string, args ...string) (*process, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid: true,
		// If the test binary is killed before its cleanups run, the servers go with it.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	p := &process{name: filepath.Base(bin), log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	t.Cleanup(func() { p.stop(t) })
	return p, nil
}

// stop ends the process group: SIGTERM, then SIGKILL after stopGrace. On a failed test it
// logs the tail of the process's log.
func (p *process) stop(t testing.TB) {
	pgid := p.cmd.Process.Pid
	select {
	case <-p.done:
	default:
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(stopGrace):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.done
		}
	}
	if t.Failed() {
		t.Logf("apiserver: last lines of %s:\n%s", p.log, tailFile(p.log, 30))
	}
}

// waitFor polls check until it reports ready, the process exits, or timeout passes; errors
// say what was waited for, the last observation and the end of the process's log.
func waitFor(p *process, what string, timeout time.Duration, check func() (bool, string)) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	last := "no answer yet"
	for {
		ok, obs := check()
		if ok {
			return nil
		}
		if obs != "" {
			last = obs
		}
		select {
		case <-p.done:
			log := tailFile(p.log, 30)
			err := fmt.Errorf("%s exited while waiting for %s (%v); last lines of %s:\n%s", p.name, what, p.err, p.log, log)
			if strings.Contains(log, "address already in use") {
				return fmt.Errorf("%w: %w", errPortTaken, err)
			}
			return err
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: no success within %s; last answer: %s; last lines of %s:\n%s",
				what, timeout, last, p.log, tailFile(p.log, 30))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func tailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return lastLines(data, n)
}

func lastLines(data []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
