package addons

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
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
