package addons

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/ksboot/ksboot/bootstrap/addons/kube"
	"github.com/ksboot/ksboot/cluster"
)

// OpenEBS LocalPV hostpath provisioner ksboot deploys as the default StorageClass. The
// versions are those of the localpv-provisioner chart 4.4.0 (provisioner 4.4.0 with
// linux-utils 4.3.0 as its helper image), which KubeKey v4 also pins.
const (
	OpenEBSVersion           = "4.4.0"
	OpenEBSProvisionerImage  = "docker.io/openebs/provisioner-localpv:" + OpenEBSVersion
	OpenEBSHelperImage       = "docker.io/openebs/linux-utils:4.3.0"
	OpenEBSNamespace         = "openebs"
	OpenEBSDeployment        = "openebs-localpv-provisioner"
	OpenEBSStorageClass      = cluster.DefaultStorageClass // "openebs-hostpath"
	OpenEBSBasePath          = "/var/openebs/local"
	openEBSServiceAccount    = "openebs-localpv-provisioner"
	openEBSProvisionerName   = "openebs.io/local"
	defaultStorageClassLabel = "storageclass.kubernetes.io/is-default-class"
)

// OpenEBS returns the OpenEBS LocalPV objects, in apply order, or nothing when
// spec.storage.defaultClass names another class: the operator then provides storage and a
// second default class would make PVC binding ambiguous.
func OpenEBS(c *cluster.Cluster) ([]*unstructured.Unstructured, error) {
	if c.Spec.Storage.DefaultClass != OpenEBSStorageClass {
		return nil, nil
	}
	labels := map[string]string{
		"app":                          "localpv-provisioner",
		"name":                         OpenEBSDeployment,
		"openebs.io/component-name":    OpenEBSDeployment,
		"app.kubernetes.io/managed-by": "ksboot",
	}
	selector := map[string]string{"app": "localpv-provisioner", "name": OpenEBSDeployment}
	fieldEnv := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
	}
	all := []string{"*"}
	objs := []runtime.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: OpenEBSNamespace, Labels: map[string]string{
			// Helper pods mount host paths to create and clean volume directories.
			"pod-security.kubernetes.io/enforce": "privileged",
		}}},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: openEBSServiceAccount, Namespace: OpenEBSNamespace, Labels: labels}},
		// The rules of the localpv-provisioner chart, narrowed from its "*" API groups to the
		// groups the resources live in.
		&rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: openEBSServiceAccount, Labels: labels},
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}},
				// Helper pods create and remove the volume directories on the nodes.
				{APIGroups: []string{""}, Resources: []string{"namespaces", "pods", "events", "endpoints"}, Verbs: all},
				{APIGroups: []string{""}, Resources: []string{"resourcequotas", "limitranges"}, Verbs: []string{"list", "watch"}},
				{APIGroups: []string{""}, Resources: []string{"persistentvolumeclaims", "persistentvolumes"}, Verbs: all},
				{APIGroups: []string{"storage.k8s.io"}, Resources: []string{"storageclasses"}, Verbs: all},
				{APIGroups: []string{"events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "patch", "update"}},
				// Leader election of the provisioner.
				{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "create", "update"}},
				{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}},
			},
		},
		&rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: openEBSServiceAccount, Labels: labels},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: openEBSServiceAccount},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: openEBSServiceAccount, Namespace: OpenEBSNamespace}},
		},
		&appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: OpenEBSDeployment, Namespace: OpenEBSNamespace, Labels: labels},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](1),
				Selector: &metav1.LabelSelector{MatchLabels: selector},
				// Two provisioners must never run at once; upstream uses Recreate too.
				Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{
						ServiceAccountName: openEBSServiceAccount,
						Containers: []corev1.Container{{
							Name:            "openebs-provisioner-hostpath",
							Image:           Image(c.Spec.Registry, OpenEBSProvisionerImage),
							ImagePullPolicy: corev1.PullIfNotPresent,
							Env: []corev1.EnvVar{
								fieldEnv("NODE_NAME", "spec.nodeName"),
								fieldEnv("OPENEBS_NAMESPACE", "metadata.namespace"),
								fieldEnv("OPENEBS_SERVICE_ACCOUNT", "spec.serviceAccountName"),
								// No phoning home from a cluster that may be air-gapped.
								{Name: "OPENEBS_IO_ENABLE_ANALYTICS", Value: "false"},
								{Name: "OPENEBS_IO_INSTALLER_TYPE", Value: "ksboot"},
								// The helper image is named here, so the registry rewrite must
								// apply to it as well or offline clusters fail at the first PVC.
								{Name: "OPENEBS_IO_HELPER_IMAGE", Value: Image(c.Spec.Registry, OpenEBSHelperImage)},
								{Name: "OPENEBS_IO_BASE_PATH", Value: OpenEBSBasePath},
							},
							LivenessProbe: &corev1.Probe{
								ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{
									Command: []string{"sh", "-c", "test `pgrep -c \"^provisioner-loc.*\"` = 1"},
								}},
								InitialDelaySeconds: 30,
								PeriodSeconds:       60,
							},
						}},
					},
				},
			},
		},
		&storagev1.StorageClass{
			ObjectMeta: metav1.ObjectMeta{
				Name: OpenEBSStorageClass,
				Annotations: map[string]string{
					defaultStorageClassLabel: "true",
					"openebs.io/cas-type":    "local",
					"cas.openebs.io/config": "- name: StorageType\n  value: hostpath\n" +
						"- name: BasePath\n  value: " + OpenEBSBasePath + "\n",
				},
			},
			Provisioner: openEBSProvisionerName,
			// A hostpath volume lives on one node; binding must wait until the pod is
			// scheduled so the volume is made where the pod runs.
			VolumeBindingMode: ptr.To(storagev1.VolumeBindingWaitForFirstConsumer),
			ReclaimPolicy:     ptr.To(corev1.PersistentVolumeReclaimDelete),
		},
	}
	return kube.ToUnstructured(objs...)
}

// OpenEBSWaitWhat names what WaitOpenEBS waits for, in messages.
var OpenEBSWaitWhat = fmt.Sprintf("OpenEBS LocalPV (deployment %s/%s available, StorageClass %s the default)",
	OpenEBSNamespace, OpenEBSDeployment, OpenEBSStorageClass)

// CheckOpenEBS reports what keeps the default storage from being usable: the provisioner
// Deployment missing or not available, the StorageClass missing or not marked default. No
// problems means PVCs that name no class can be provisioned. An error is a failed read, worth
// another try.
func CheckOpenEBS(ctx context.Context, cs kubernetes.Interface) ([]kube.Problem, error) {
	var out []kube.Problem
	dep := "deployment " + OpenEBSNamespace + "/" + OpenEBSDeployment
	d, err := cs.AppsV1().Deployments(OpenEBSNamespace).Get(ctx, OpenEBSDeployment, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		out = append(out, kube.Problem{Object: dep, Reason: "NotFound", Message: "not created; the addons step applies it"})
	case err != nil:
		return nil, fmt.Errorf("reading %s: %w", dep, err)
	default:
		if ok, why := kube.DeploymentAvailable(d); !ok {
			out = append(out, kube.Problem{Object: dep, Reason: "NotAvailable", Message: why})
		}
	}
	sc := "storageclass " + OpenEBSStorageClass
	s, err := cs.StorageV1().StorageClasses().Get(ctx, OpenEBSStorageClass, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		out = append(out, kube.Problem{Object: sc, Reason: "NotFound", Message: "not created; the addons step applies it"})
	case err != nil:
		return nil, fmt.Errorf("reading %s: %w", sc, err)
	case s.Annotations[defaultStorageClassLabel] != "true":
		out = append(out, kube.Problem{Object: sc, Reason: "NotDefault",
			Message: fmt.Sprintf("annotation %s=%q, want \"true\": PVCs that name no class would stay Pending",
				defaultStorageClassLabel, s.Annotations[defaultStorageClassLabel])})
	}
	return out, nil
}

// WaitOpenEBS waits, bounded by timeout, until CheckOpenEBS finds nothing missing. progress,
// if not nil, is called whenever the list of problems changes. On timeout the error is a
// *kube.WaitError (wrapping kube.ErrTimeout) naming the Deployment and StorageClass problems
// and the pods of the openebs namespace that are not ready and why, followed by what to do.
func WaitOpenEBS(ctx context.Context, cs kubernetes.Interface, interval, timeout time.Duration, progress func([]kube.Problem)) error {
	pending := []kube.Problem{{Object: "deployment " + OpenEBSNamespace + "/" + OpenEBSDeployment, Reason: "Unknown", Message: "not read yet"}}
	lastText := ""
	err := kube.Poll(ctx, interval, timeout, func(ctx context.Context) (bool, error) {
		now, err := CheckOpenEBS(ctx, cs)
		if err != nil {
			return false, err
		}
		pending = now
		if s := problemsText(now); s != lastText && progress != nil && len(now) > 0 {
			lastText = s
			progress(now)
		}
		return len(now) == 0, nil
	})
	if err == nil {
		return nil
	}
	we := kube.NewWaitError(ctx, cs, OpenEBSWaitWhat, err, pending, OpenEBSNamespace)
	return fmt.Errorf("%w\n%s", we, openEBSHint(we))
}

// openEBSHint says what to do about a failed OpenEBS wait.
func openEBSHint(we *kube.WaitError) string {
	again := "run `ksboot agent phase addons` on this node to finish the step"
	var imgs []string
	for _, p := range we.ImagePullProblems() {
		if p.Image != "" && !slices.Contains(imgs, p.Image) {
			imgs = append(imgs, p.Image)
		}
	}
	if len(imgs) > 0 {
		return fmt.Sprintf("could not pull %s. Nodes pull from spec.registry.privateRegistry when it is set, "+
			"from upstream otherwise: copy the image there (`ksboot bundle` collects OpenEBS's images) "+
			"or correct spec.registry, then %s.", strings.Join(imgs, ", "), again)
	}
	return fmt.Sprintf("See `kubectl -n %s describe pods -l name=%s` and `kubectl -n %s get events`; "+
		"once the provisioner runs, %s.", OpenEBSNamespace, OpenEBSDeployment, OpenEBSNamespace, again)
}

func problemsText(ps []kube.Problem) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, "; ")
}
