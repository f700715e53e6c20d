package kubeadm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	bootstrapapi "k8s.io/cluster-bootstrap/token/api"
	"k8s.io/cluster-bootstrap/token/jws"
	bootstraputil "k8s.io/cluster-bootstrap/token/util"
	bootstrapsecretutil "k8s.io/cluster-bootstrap/util/secrets"
	bootstraptokenutil "k8s.io/cluster-bootstrap/util/tokens"

	"github.com/ksboot/ksboot/cluster"
)

// This file replaces the cluster's bootstrap token from outside the cluster (`ksboot token
// rotate`): the token Secret in kube-system, the wait for the cluster-info signature that
// token discovery needs, and the secrets directory that seeds are built from.

const (
	// DefaultSignatureWait bounds the wait for kube-controller-manager to sign cluster-info
	// for a new token. Its bootstrap signer reacts to a new token Secret within seconds.
	DefaultSignatureWait = 2 * time.Minute
	signaturePoll        = 2 * time.Second
	signatureReport      = 15 * time.Second
	// cleanupTimeout bounds the deletes made after a failure, when the caller's context may
	// already be done.
	cleanupTimeout = 30 * time.Second
)

// writeBootstrapToken is cluster.WriteBootstrapToken; tests make it fail.
var writeBootstrapToken = cluster.WriteBootstrapToken

// TokenSecret returns the Secret that makes token a bootstrap token, shaped as kubeadm creates
// it (BootstrapTokenToSecret in kubeadm's bootstraptoken API) and with what kubeadm init gives
// the seed's token: ksboot's description, usable for authentication and for signing
// cluster-info, and kubeadm's node group, so the cluster's RBAC for joining nodes (TLS
// bootstrap, CSR auto-approval, reading kubeadm-config) applies unchanged. ttl 0 means the
// token never expires; otherwise it expires at now+ttl and kube-controller-manager's token
// cleaner deletes it then.
func TokenSecret(token string, ttl time.Duration, now time.Time) (*corev1.Secret, error) {
	id, secret, err := bootstraptokenutil.ParseToken(token)
	if err != nil {
		// ParseToken's error quotes the value: never show it.
		return nil, errors.New("bootstrap token: not of the form [a-z0-9]{6}.[a-z0-9]{16}")
	}
	if ttl < 0 {
		return nil, fmt.Errorf("bootstrap token TTL %s is negative", ttl)
	}
	data := map[string][]byte{
		bootstrapapi.BootstrapTokenIDKey:               []byte(id),
		bootstrapapi.BootstrapTokenSecretKey:           []byte(secret),
		bootstrapapi.BootstrapTokenDescriptionKey:      []byte(tokenDescription),
		bootstrapapi.BootstrapTokenUsageSigningKey:     []byte("true"),
		bootstrapapi.BootstrapTokenUsageAuthentication: []byte("true"),
		bootstrapapi.BootstrapTokenExtraGroupsKey:      []byte(strings.Join(tokenGroups, ",")),
	}
	if ttl > 0 {
		data[bootstrapapi.BootstrapTokenExpirationKey] = []byte(now.Add(ttl).UTC().Format(time.RFC3339))
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: bootstraputil.BootstrapTokenSecretName(id), Namespace: metav1.NamespaceSystem},
		Type:       bootstrapapi.SecretTypeBootstrapToken,
		Data:       data,
	}, nil
}

// tokenID is the public half of a token that is known to be valid.
func tokenID(token string) string {
	id, _, _ := strings.Cut(token, ".")
	return id
}

// DeleteToken deletes the Secret of the bootstrap token with this ID. It reports whether there
// was one: a token that is gone already (deleted, or expired and cleaned up) is no error.
func DeleteToken(ctx context.Context, cs kubernetes.Interface, id string) (bool, error) {
	err := cs.CoreV1().Secrets(metav1.NamespaceSystem).Delete(ctx, bootstraputil.BootstrapTokenSecretName(id), metav1.DeleteOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("deleting bootstrap token %s (secret %s/%s): %w", id, metav1.NamespaceSystem, bootstraputil.BootstrapTokenSecretName(id), err)
	}
	return true, nil
}

// TokenSigned reports whether cluster-info carries a valid JWS signature of its kubeconfig
// made with token: kubeadm's token discovery refuses a cluster-info without one, CA pin or not.
func TokenSigned(clusterInfo *corev1.ConfigMap, token string) bool {
	id, secret, err := bootstraptokenutil.ParseToken(token)
	if err != nil {
		return false
	}
	sig, ok := clusterInfo.Data[bootstrapapi.JWSSignatureKeyPrefix+id]
	return ok && jws.DetachedTokenIsValid(sig, clusterInfo.Data[bootstrapapi.KubeConfigKey], id, secret)
}

// WaitForTokenSignature waits, up to timeout, until kube-public/cluster-info is signed with
// token, reporting on progress while it waits. kube-controller-manager's bootstrap signer
// (on in every kubeadm cluster: --controllers=*,bootstrapsigner,tokencleaner) adds the
// signature for every token Secret with usage-bootstrap-signing.
func WaitForTokenSignature(ctx context.Context, cs kubernetes.Interface, token string, timeout time.Duration, progress io.Writer) error {
	if progress == nil {
		progress = io.Discard
	}
	id := tokenID(token)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	reported := start
	last := "no answer yet"
	fmt.Fprintf(progress, "waiting for kube-controller-manager to sign %s/%s for token %s (up to %s)\n",
		metav1.NamespacePublic, bootstrapapi.ConfigMapClusterInfo, id, timeout)
	for {
		cm, err := cs.CoreV1().ConfigMaps(metav1.NamespacePublic).Get(ctx, bootstrapapi.ConfigMapClusterInfo, metav1.GetOptions{})
		switch {
		case err == nil && TokenSigned(cm, token):
			fmt.Fprintf(progress, "%s/%s is signed for token %s (%s)\n", metav1.NamespacePublic, bootstrapapi.ConfigMapClusterInfo, id, time.Since(start).Round(time.Second))
			return nil
		case err == nil && cm.Data[bootstrapapi.JWSSignatureKeyPrefix+id] != "":
			last = "a signature for token " + id + " is there but does not verify (yet)"
		case err == nil:
			last = "no signature for token " + id + " yet"
		case ctx.Err() == nil:
			last = err.Error()
		}
		if now := time.Now(); now.Sub(reported) >= signatureReport {
			reported = now
			fmt.Fprintf(progress, "still waiting for the signature of token %s (%s of %s): %s\n", id, now.Sub(start).Round(time.Second), timeout, last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kube-controller-manager did not sign %s/%s for token %s within %s (last: %s); is it running with its bootstrapsigner controller? "+
				"(kubectl -n kube-system get pods -l component=kube-controller-manager)", metav1.NamespacePublic, bootstrapapi.ConfigMapClusterInfo, id, timeout, last)
		case <-time.After(signaturePoll):
		}
	}
}

// ClientFromKubeconfig connects to the cluster of a kubeconfig file. An empty path means
// kubectl's default: $KUBECONFIG, else ~/.kube/config.
func ClientFromKubeconfig(path string) (kubernetes.Interface, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if path != "" {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("reading the kubeconfig: %w", err)
		}
		rules.ExplicitPath = path
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	switch {
	case path == "" && clientcmd.IsEmptyConfig(err):
		return nil, fmt.Errorf("no kubeconfig found (%s is unset and %s is missing): pass --kubeconfig, e.g. a copy of the first control plane's %s",
			clientcmd.RecommendedConfigPathEnvVar, clientcmd.RecommendedHomeFile, AdminConf)
	case err != nil && path != "":
		return nil, fmt.Errorf("reading the kubeconfig %s: %w", path, err)
	case err != nil:
		return nil, fmt.Errorf("reading the kubeconfig: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("making a client from the kubeconfig: %w", err)
	}
	return cs, nil
}

// RotateOptions describe one token rotation.
type RotateOptions struct {
	// SecretsDir is the cluster's secrets directory; its token is the one replaced.
	SecretsDir string
	// TTL is the new token's lifetime; zero never expires (the seed token's default).
	TTL time.Duration
	// SignatureWait bounds the wait for cluster-info's signature; zero is DefaultSignatureWait.
	SignatureWait time.Duration
	// Progress receives one line per step; token IDs only, never a token.
	Progress io.Writer
	// Now is the clock for the expiration; nil is time.Now.
	Now func() time.Time
}

// RotateResult is what a rotation did.
type RotateResult struct {
	OldID, NewID string
	// OldDeleted is false when the old token's Secret was gone already.
	OldDeleted bool
	// Stale lists other ksboot tokens deleted: left by an interrupted rotation.
	Stale []string
	// Expires is the new token's expiry; zero when it never expires.
	Expires time.Time
}

// RotateToken replaces the bootstrap token of the secrets directory with a new one, in an
// order that leaves a working token at every step, whatever fails or wherever the process
// stops:
//
//  1. check that the kubeconfig's cluster is the directory's (cluster-info holds the same CA);
//  2. create the new token's Secret; the old token still works;
//  3. wait until cluster-info is signed for the new token (token discovery needs that);
//  4. write the new token into the secrets directory (atomic, see cluster.WriteBootstrapToken);
//  5. delete the old token's Secret, and ksboot tokens an interrupted rotation left, so seeds
//     built before are refused from now on.
//
// A failure in 2–4 deletes the new Secret again and leaves everything as it was; a failure
// in 5 leaves the old token valid too. Every error says which tokens the cluster and the
// directory hold. A process killed between 2 and 5 leaves an extra ksboot token in the
// cluster that no file holds; the next rotation deletes it.
func RotateToken(ctx context.Context, cs kubernetes.Interface, o RotateOptions) (*RotateResult, error) {
	if o.SignatureWait <= 0 {
		o.SignatureWait = DefaultSignatureWait
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.TTL < 0 {
		return nil, fmt.Errorf("bootstrap token TTL %s is negative", o.TTL)
	}
	dir := o.SecretsDir
	secrets, err := cluster.ReadSecrets(dir)
	if err != nil {
		return nil, err
	}
	oldTok := secrets.BootstrapToken
	res := &RotateResult{OldID: tokenID(oldTok)}
	unchanged := fmt.Sprintf("nothing changed: %s and the cluster hold token %s as before", dir, res.OldID)

	if err := sameCluster(ctx, cs, secrets); err != nil {
		return nil, fmt.Errorf("%w; %s", err, unchanged)
	}
	secretsAPI := cs.CoreV1().Secrets(metav1.NamespaceSystem)
	switch _, err := secretsAPI.Get(ctx, bootstraputil.BootstrapTokenSecretName(res.OldID), metav1.GetOptions{}); {
	case apierrors.IsNotFound(err):
		fmt.Fprintf(o.Progress, "the current token %s of %s is not in the cluster (deleted, or expired): seeds built with it are refused already\n", res.OldID, dir)
	case err != nil:
		return nil, fmt.Errorf("reading bootstrap token %s: %w; %s", res.OldID, err, unchanged)
	}

	newTok, err := bootstraputil.GenerateBootstrapToken()
	for err == nil && tokenID(newTok) == res.OldID {
		newTok, err = bootstraputil.GenerateBootstrapToken()
	}
	if err != nil {
		return nil, fmt.Errorf("generating a bootstrap token: %w; %s", err, unchanged)
	}
	res.NewID = tokenID(newTok)
	sec, err := TokenSecret(newTok, o.TTL, o.Now())
	if err != nil {
		return nil, err
	}
	if o.TTL > 0 {
		res.Expires, _ = time.Parse(time.RFC3339, string(sec.Data[bootstrapapi.BootstrapTokenExpirationKey]))
	}
	if _, err := secretsAPI.Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		return nil, fmt.Errorf("creating bootstrap token %s: %w; %s", res.NewID, err, unchanged)
	}
	fmt.Fprintf(o.Progress, "created bootstrap token %s in the cluster (%s)\n", res.NewID, expiry(res.Expires))

	// rollback undoes step 2 after a failure in 3 or 4, when the directory holds the old token.
	rollback := func(cause error) error {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if _, derr := DeleteToken(cctx, cs, res.NewID); derr != nil {
			return fmt.Errorf("%w; %s still holds token %s, which still works, but the new token %s could not be removed from the cluster (%w): "+
				"delete it with `kubectl -n %s delete secret %s`", cause, dir, res.OldID, res.NewID, derr, metav1.NamespaceSystem, sec.Name)
		}
		return fmt.Errorf("%w; the new token %s was deleted again, %s", cause, res.NewID, unchanged)
	}

	if err := WaitForTokenSignature(ctx, cs, newTok, o.SignatureWait, o.Progress); err != nil {
		return nil, rollback(err)
	}

	if err := writeBootstrapToken(dir, newTok); err != nil {
		onDisk, rerr := cluster.ReadBootstrapToken(dir)
		switch {
		case rerr == nil && onDisk == newTok:
			// The rename happened; only making it durable failed. Go on: the new token is
			// what the directory holds.
			fmt.Fprintf(o.Progress, "warning: %v\n", err)
		case rerr == nil && onDisk == oldTok:
			return nil, rollback(err)
		default:
			return nil, fmt.Errorf("%w; the token file of %s cannot be read back (%w): the cluster keeps both token %s and token %s valid until the file is restored "+
				"(then run ksboot token rotate again)", err, dir, rerr, res.OldID, res.NewID)
		}
	}
	fmt.Fprintf(o.Progress, "wrote token %s to %s: seeds built from now on carry it\n", res.NewID, dir)

	var errs []error
	res.OldDeleted, err = DeleteToken(ctx, cs, res.OldID)
	if err != nil {
		errs = append(errs, err)
	}
	stale, err := staleTokens(ctx, cs, res.OldID, res.NewID)
	if err != nil {
		errs = append(errs, err)
	}
	for _, id := range stale {
		if _, err := DeleteToken(ctx, cs, id); err != nil {
			errs = append(errs, err)
			continue
		}
		res.Stale = append(res.Stale, id)
	}
	if err := errors.Join(errs...); err != nil {
		return res, fmt.Errorf("%s and the cluster hold the new token %s, but removing the old token(s) failed, so seeds built before may still join: %w "+
			"(run ksboot token rotate again, or delete the Secret with kubectl -n %s delete secret %s<id>)",
			dir, res.NewID, err, metav1.NamespaceSystem, bootstrapapi.BootstrapTokenSecretPrefix)
	}
	return res, nil
}

// Expiry says when the new token expires, for people.
func (r *RotateResult) Expiry() string { return expiry(r.Expires) }

func expiry(t time.Time) string {
	if t.IsZero() {
		return "never expires"
	}
	return "expires " + t.Format(time.RFC3339)
}

// sameCluster checks that the API server belongs to the secrets directory: cluster-info, which
// kubeadm init publishes, must name the directory's CA. Rotating against another cluster would
// write a token into the directory that its own cluster does not know.
func sameCluster(ctx context.Context, cs kubernetes.Interface, s *cluster.Secrets) error {
	want, err := s.CAPin()
	if err != nil {
		return err
	}
	where := metav1.NamespacePublic + "/" + bootstrapapi.ConfigMapClusterInfo
	cm, err := cs.CoreV1().ConfigMaps(metav1.NamespacePublic).Get(ctx, bootstrapapi.ConfigMapClusterInfo, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("the cluster has no %s, which kubeadm init creates and every join reads: is this a kubeadm cluster?", where)
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", where, err)
	}
	kc, err := clientcmd.Load([]byte(cm.Data[bootstrapapi.KubeConfigKey]))
	if err != nil {
		return fmt.Errorf("%s: parsing its kubeconfig: %w", where, err)
	}
	var seen []string
	for _, c := range kc.Clusters {
		pin, err := cluster.CAPinFromPEM(c.CertificateAuthorityData)
		if err != nil {
			continue
		}
		if pin == want {
			return nil
		}
		seen = append(seen, pin)
	}
	if len(seen) == 0 {
		return fmt.Errorf("%s holds no CA certificate", where)
	}
	return fmt.Errorf("the cluster's CA (%s, from %s) is not the secrets directory's (%s): the kubeconfig and the secrets directory belong to different clusters",
		strings.Join(seen, ", "), where, want)
}

// staleTokens lists the IDs of ksboot's bootstrap tokens (by their description) other than
// keep and skip: tokens whose rotation was interrupted after their Secret was created.
func staleTokens(ctx context.Context, cs kubernetes.Interface, skip, keep string) ([]string, error) {
	list, err := cs.CoreV1().Secrets(metav1.NamespaceSystem).List(ctx, metav1.ListOptions{
		FieldSelector: fields.SelectorFromSet(fields.Set{"type": string(bootstrapapi.SecretTypeBootstrapToken)}).String(),
	})
	if err != nil {
		return nil, fmt.Errorf("listing bootstrap tokens: %w", err)
	}
	var ids []string
	for i := range list.Items {
		s := &list.Items[i]
		if s.Type != bootstrapapi.SecretTypeBootstrapToken || bootstrapsecretutil.GetData(s, bootstrapapi.BootstrapTokenDescriptionKey) != tokenDescription {
			continue
		}
		id, ok := bootstrapsecretutil.ParseName(s.Name)
		if !ok || id == skip || id == keep {
			continue
		}
		ids = append(ids, id)
	}
	return ids, nil
}
