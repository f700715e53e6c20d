// Package workflow runs the agent's phases in order, the way kubeadm's phases/workflow does:
// each phase is a small struct with a name, a one-line description and a Run function, registered
// explicitly in one list. The runner records every phase's start, end, duration and outcome in
// status.json, skips phases that already finished (so a reboot or a crash resumes at the phase
// that did not), writes the failure and completion markers, and runs a single phase on demand.
package workflow
