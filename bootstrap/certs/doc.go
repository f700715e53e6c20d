// Package certs keeps a control plane's kubeadm certificates valid without SSH, as KubeKey's
// `kk certs check-expiration` / `renew` and its auto-renew timer do: it reads the expiry of
// every certificate kubeadm manages on the node (the PKI files and the client certificates
// embedded in its kubeconfig files), reports them in an annotation on the node's Node for
// `ksboot certs check-expiration`, and renews them with `kubeadm certs renew all` (then
// restarts the control-plane pods so that they load the new files), on request of `ksboot
// certs renew` or by itself when one expires within RenewBefore.
package certs
