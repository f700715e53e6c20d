// Package follow is the node's day-two agent loop (`ksboot agent serve`, ksboot-agent.service):
// once the node has joined, it follows its own Node object with the kubelet's credentials and
// carries out the requests addressed to it there, since no task machine can reach the node
// over SSH: the reset request of `ksboot node delete` (package nodedelete), which the agent
// acknowledges before it resets the machine, and on control planes the certificates (package
// certs): an hourly report on the Node, renewal on request of `ksboot certs renew`, and
// renewal by itself when one expires within 30 days, as KubeKey's auto-renew timer does.
package follow
