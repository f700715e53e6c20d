// Package endpoint is the agent's discover phase: it decides which API server address this node
// uses, through package discovery (mDNS with CA pinning, or the static endpoint), and applies the
// ordering rules: the init node first checks that no API server of its cluster already answers
// (then it joins instead of starting a second cluster), control planes join one at a time in file
// order, and workers wait until a control plane announces its API.
package endpoint
