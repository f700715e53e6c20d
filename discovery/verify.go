package discovery

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/ksboot/ksboot/cluster"
)

// verifyEndpoint connects to addr with TLS and checks that the server's certificate chains to
// the cluster CA, for server use, and that the CA in the chain has the pinned public key. This is
// where trust comes from: mDNS only says where to look.
//
// The host name is deliberately not checked: the announced address may be a VIP or a load
// balancer that is not in the certificate, and what matters is that the cluster's private CA
// signed a serving certificate, which only members of the cluster can obtain.
//
// It dials on the calling goroutine (so in the calling thread's network namespace).
func verifyEndpoint(ctx context.Context, addr string, tr *trust, timeout time.Duration) (*x509.Certificate, error) {
	roots := x509.NewCertPool()
	roots.AddCert(tr.ca)
	var leaf *x509.Certificate
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Verification is done below, without the host-name check; InsecureSkipVerify only turns
		// off the standard check so that VerifyConnection can replace it.
		InsecureSkipVerify: true, //nolint:gosec // replaced by VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the server sent no certificate")
			}
			leaf = cs.PeerCertificates[0]
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			chains, err := leaf.Verify(x509.VerifyOptions{
				Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
			})
			if err != nil {
				return err
			}
			for _, ch := range chains {
				if cluster.CAPin(ch[len(ch)-1]) == tr.pin {
					return nil
				}
			}
			return fmt.Errorf("no chain ends at the CA with pin %s", tr.pin)
		},
	}
	if host, _, err := net.SplitHostPort(addr); err == nil && net.ParseIP(host) == nil {
		cfg.ServerName = host // SNI for a name; an IP literal must not be sent as SNI
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	raw, err := (&net.Dialer{}).DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("verifying %s: the API server does not answer yet: %w", addr, err)
	}
	defer raw.Close()
	conn := tls.Client(raw, cfg)
	if err := conn.HandshakeContext(dctx); err != nil {
		return nil, fmt.Errorf("verifying %s: %w", addr, classifyTLSError(addr, leaf, tr, err))
	}
	return leaf, nil
}

// classifyTLSError says in words what went wrong, separating "this is not our cluster" (an
// UntrustedError) from "our cluster, but something is off" (clock, usage) and "not TLS".
func classifyTLSError(addr string, leaf *x509.Certificate, tr *trust, err error) error {
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	switch {
	case leaf != nil && errors.As(err, &unknown):
		return &UntrustedError{Addr: addr, Subject: leaf.Subject.String(), Issuer: leaf.Issuer.String(), Pin: tr.pin, Err: err}
	case leaf != nil && errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return fmt.Errorf("its certificate is not valid at this node's time %s (valid %s to %s); the clocks disagree: set spec.ntp or fix the clock: %w",
			time.Now().UTC().Format(time.RFC3339), leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339), err)
	case leaf != nil && errors.As(err, &invalid) && invalid.Reason == x509.IncompatibleUsage:
		return fmt.Errorf("its certificate (%s) is not a server certificate: %w", leaf.Subject, err)
	case leaf != nil:
		return fmt.Errorf("its certificate (%s) was refused: %w", leaf.Subject, err)
	default:
		return fmt.Errorf("TLS handshake failed (is this a Kubernetes API server?): %w", err)
	}
}
