// Package follow is the node's day-two agent loop (`ksboot agent serve`, ksboot-agent.service):
// once the node has joined, it follows its own Node object with the kubelet's credentials and
// carries out the requests addressed to it there, since no task machine can reach the node
// over SSH. Today that is the reset request of `ksboot node delete` (package nodedelete): the
// agent records that it began and resets the machine.
package follow
