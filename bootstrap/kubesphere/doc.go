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
//     or action.Upgrade when the release exists with another chart or other values), with the
//     values of ChartValues (global.imageRegistry; extension.imageRegistry for a registry other
//     than docker.io; each image's repository under spec.registry.namespaceOverride; portal
//     hostname and port from the console address and NodePort; a pinned extensions museum tag
//     where the chart says :latest) and spec.kubesphere.configuration merged over them. The
//     chart is first rendered client-side (RenderParams): an image the values cannot move under
//     the namespace override is refused before anything is applied. Helm runs the chart's
//     hooks (ks-core's post-install Jobs run kubesphere/kubectl); completion is then every
//     Deployment of the release being available. Hooks and Deployments share one deadline.
//
// Upstream suspended KubeSphere's open-source downloads in 2025, so nothing here assumes they
// work: the image registry (spec.kubesphere.imageRegistry, else spec.registry.privateRegistry,
// else a zone default, else docker.io), the installer image and the chart source (an http(s)
// URL or a path in the offline bundle) are configuration with documented defaults (the
// Default* constants). A chart that cannot be fetched is a *ChartError naming it, and a wait
// that ends with pods in ImagePullBackOff names the images; both say how to point ksboot at a
// mirror (MirrorHint). Every wait has a deadline (DefaultTimeout, configurable) and on timeout
// lists the pods that are not ready and why (ImagePullBackOff <image>, Unschedulable, …). A
// chart hook that does not finish is diagnosed the same way, instead of Helm's bare "timed out
// waiting for the condition": the pods of the hook Jobs are watched while Helm waits (Helm
// deletes a failed hook Job, and the garbage collector its pods, before the install returns),
// and the error names the hook, its pod, the reason and the image (a *HookError inside a
// kube.WaitError).
//
// Render writes the same objects (v3) or the rendered chart with its hooks, as `helm template`
// prints it (v4), to kubesphere.yaml for --dry-run; `ksboot bundle` collects the images of the
// same rendering (Rendered.Images), hooks included.
package kubesphere
