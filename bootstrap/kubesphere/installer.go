package kubesphere

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/ksboot/ksboot/bootstrap/addons/kube"
)

// Names of the v3 installer objects, as upstream's kubesphere-installer.yaml has them.
const (
	Namespace                = "kubesphere-system"
	InstallerName            = "ks-installer"
	ClusterConfigurationName = "ks-installer"
	ClusterConfigurationCRD  = "clusterconfigurations.installer.kubesphere.io"
	installerGroup           = "installer.kubesphere.io"
	installerVersion         = "v1alpha1"
)

// InstallerObjects returns the v3 ks-installer objects followed by the ClusterConfiguration,
// in apply order: namespace, CRD, ServiceAccount, ClusterRole, ClusterRoleBinding, Deployment,
// ClusterConfiguration.
func InstallerObjects(p Params) ([]*unstructured.Unstructured, error) {
	preserve := &apiextensionsv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: ptr.To(true)}
	labels := map[string]string{"app": InstallerName}
	objs := []runtime.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}},
		// The CRD has no status subresource, as upstream's: ks-installer writes status through
		// the main resource, and with a status subresource the API server would silently drop
		// those writes and completion would never be seen.
		&apiextensionsv1.CustomResourceDefinition{
			ObjectMeta: metav1.ObjectMeta{Name: ClusterConfigurationCRD},
			Spec: apiextensionsv1.CustomResourceDefinitionSpec{
				Group: installerGroup,
				Scope: apiextensionsv1.NamespaceScoped,
				Names: apiextensionsv1.CustomResourceDefinitionNames{
					Plural: "clusterconfigurations", Singular: "clusterconfiguration",
					Kind: "ClusterConfiguration", ListKind: "ClusterConfigurationList", ShortNames: []string{"cc"},
				},
				Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
					Name: installerVersion, Served: true, Storage: true,
					Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
						Type: "object",
						Properties: map[string]apiextensionsv1.JSONSchemaProps{
							"spec":   *preserve,
							"status": *preserve,
						},
					}},
				}},
			},
		},
		&corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: InstallerName, Namespace: Namespace}},
		// ks-installer installs every KubeSphere component: CRDs, webhooks, RBAC of its own
		// (which needs escalate and bind) and workloads in several namespaces. Upstream's role
		// lists some thirty API groups with every verb, which amounts to cluster-admin; saying
		// so plainly is more honest and does not go stale when a release adds a group.
		&rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: InstallerName},
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"*"}},
				{NonResourceURLs: []string{"*"}, Verbs: []string{"*"}},
			},
		},
		&rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: InstallerName},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: InstallerName},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: InstallerName, Namespace: Namespace}},
		},
		&appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: InstallerName, Namespace: Namespace, Labels: labels},
			Spec: appsv1.DeploymentSpec{
				Replicas: ptr.To[int32](1),
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{
						ServiceAccountName: InstallerName,
						Containers: []corev1.Container{{
							Name:  "installer",
							Image: p.InstallerImage,
							// Upstream pulls Always; IfNotPresent lets an image loaded from the
							// offline bundle serve without any registry.
							ImagePullPolicy: corev1.PullIfNotPresent,
							Resources: corev1.ResourceRequirements{
								Limits: corev1.ResourceList{
									corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("1Gi"),
								},
								Requests: corev1.ResourceList{
									corev1.ResourceCPU: resource.MustParse("20m"), corev1.ResourceMemory: resource.MustParse("100Mi"),
								},
							},
							VolumeMounts: []corev1.VolumeMount{{Name: "host-time", MountPath: "/etc/localtime", ReadOnly: true}},
						}},
						Volumes: []corev1.Volume{{Name: "host-time", VolumeSource: corev1.VolumeSource{
							HostPath: &corev1.HostPathVolumeSource{Path: "/etc/localtime"},
						}}},
					},
				},
			},
		},
	}
	out, err := kube.ToUnstructured(objs...)
	if err != nil {
		return nil, err
	}
	cc, err := ClusterConfiguration(p)
	if err != nil {
		return nil, err
	}
	return append(out, cc), nil
}

// ClusterConfiguration returns the ClusterConfiguration ks-installer reads: upstream's full
// default spec for the KubeSphere minor (DefaultCCSpec) with ksboot's settings (storage class,
// etcd endpoints, registry, zone, console port), and spec.kubesphere.configuration merged over
// it, so anything KubeSphere documents for this object can be set in the cluster file.
func ClusterConfiguration(p Params) (*unstructured.Unstructured, error) {
	spec, err := ccSpec(p)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": installerGroup + "/" + installerVersion,
		"kind":       "ClusterConfiguration",
		"metadata": map[string]any{
			"name": ClusterConfigurationName, "namespace": Namespace,
			"labels": map[string]any{"version": p.Version},
		},
		"spec": merge(spec, p.Configuration),
	}}
	// merge may share nested values of p.Configuration; a deep copy keeps the caller's
	// configuration out of reach of later edits of the object.
	return u.DeepCopy(), nil
}
