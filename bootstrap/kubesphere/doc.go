// Package kubesphere is the step that installs KubeSphere on the init node once the addons
// step has a network and default storage, waits for it, bounded, and returns the welcome
// banner ("Welcome to KubeSphere!", console http://<first control-plane address>:30880,
// account admin, the initial password and the reminder to change it).
//
// Two generations are supported, chosen by spec.kubesphere.version:
//
//   - v3.x: ksboot generates the ks-installer objects itself (namespace kubesphere-system, the
//     clusterconfigurations.installer.kubesphere.io CRD, ServiceAccount, ClusterRole and
//     ClusterRoleBinding ks-installer, Deployment ks-installer) and the ClusterConfiguration
//     ks-installer from the cluster file (storage class, etcd endpoints of the control planes,
//     local_registry, zone), with spec.kubesphere.configuration merged over it. They are
//     server-side applied; completion is ks-installer's own status (status.core.status
//     enabled, at the configured version).
//   - v4.x: the ks-core chart is installed with the Helm SDK (helm.sh/helm/v3 action.Install,
//     or action.Upgrade when the release exists with another chart or other values), with
//     global.imageRegistry set and spec.kubesphere.configuration merged over the values.
//     Completion is every Deployment of the release being available.
//
// Upstream suspended KubeSphere's open-source downloads in 2025, so nothing here assumes they
// work: the image registry (spec.kubesphere.imageRegistry, else spec.registry.privateRegistry,
// else a zone default, else docker.io), the installer image and the chart source (an http(s)
// URL or a path in the offline bundle) are configuration with documented defaults (the
// Default* constants). A chart that cannot be fetched is a *ChartError naming it, and a wait
// that ends with pods in ImagePullBackOff names the images; both say how to point ksboot at a
// mirror (MirrorHint). Every wait has a deadline (DefaultTimeout, configurable) and on timeout
// lists the pods that are not ready and why (ImagePullBackOff <image>, Unschedulable, …).
//
// Render writes the same objects (v3) or the rendered chart (v4) to kubesphere.yaml for
// --dry-run.
package kubesphere
