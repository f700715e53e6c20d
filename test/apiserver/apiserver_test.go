package apiserver

import (
	"context"
	"os"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/ksboot/ksboot/test/k8sbin"
)

// TestStart starts the servers and checks what tests rely on: the version, the kubeconfig,
// admin rights through system:masters, and that a Deployment creates no pods (no controllers).
func TestStart(t *testing.T) {
	s := Start(t)
	ctx := context.Background()
	cs, err := kubernetes.NewForConfig(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		t.Fatalf("server version: %v", err)
	}
	if v.GitVersion != k8sbin.Version {
		t.Errorf("server version %s, want %s", v.GitVersion, k8sbin.Version)
	}

	cfg, err := clientcmd.BuildConfigFromFlags("", s.Kubeconfig)
	if err != nil {
		t.Fatalf("loading %s: %v", s.Kubeconfig, err)
	}
	cs2, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs2.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "probe"}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating a namespace through the kubeconfig: %v", err)
	}
	review, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("self subject review: %v", err)
	}
	{
		groups := strings.Join(review.Status.UserInfo.Groups, ",")
		if !strings.Contains(groups, "system:masters") {
			t.Errorf("client groups %s, want system:masters", groups)
		}
	}
	for _, f := range []string{s.Kubeconfig} {
		if st, err := os.Stat(f); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
}
