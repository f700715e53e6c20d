// Package kube is the client-go plumbing shared by the addons and kubesphere steps: typed
// objects turned into unstructured ones, server-side apply through the dynamic client and a
// discovery-backed REST mapper, YAML rendering for --dry-run, and bounded waits whose timeout
// errors say what was being waited for and which pods are not ready, and why.
//
// Everything ksboot creates is applied with one fixed field manager (FieldManager), so that
// running a step again on a finished cluster sends the same intent and changes nothing: the API
// server does not bump the resourceVersion of an object a no-op apply touches. Apply forces
// conflicts because ksboot owns the objects it generates; a field someone else changed on one
// of them is put back, which is what re-running a bootstrap step is for.
//
// Nothing here shells out to kubectl: the agent runs on a node where kubectl may not be
// installed yet, and client-go errors carry the API status the messages need.
package kube
