// Package endpoint is the agent's discover phase: it decides which API server address this node
// uses, through package discovery (mDNS with CA pinning, or the static endpoint). The init node
// first checks that no API server of its cluster already answers (then it joins instead of
// starting a second cluster), asking by mDNS, at the endpoint, or, when static discovery points
// at its own address (haproxy), at the other control planes' addresses; every other node waits
// until a control plane answers. The order in which control planes join is not decided here but
// right before their join (package joinorder), the same way in every discovery mode.
package endpoint
