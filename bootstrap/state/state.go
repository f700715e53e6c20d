package state

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ksboot/ksboot/internal/atomicfile"
)

// StatusFile is the agent's status, relative to the root the agent runs against.
const StatusFile = "var/lib/ksboot/status.json"

// Status is /var/lib/ksboot/status.json: who the node is and how far it got. Later phases append
// to Phases; a reboot reads it back to resume.
type Status struct {
	Version   string   `json:"version"`
	Cluster   string   `json:"cluster"`
	Node      string   `json:"node"`
	Roles     []string `json:"roles"`
	Init      bool     `json:"init,omitempty"`
	Addresses []string `json:"addresses"`
	Phase     string   `json:"phase"`
	// Endpoint is the verified API server address the discover phase chose; Existing records
	// that the init node found its cluster already running (so it joined instead). Both survive a
	// reboot so the kubeadm phase can resume without discovering again.
	Endpoint string `json:"endpoint,omitempty"`
	Existing bool   `json:"existing,omitempty"`
	// Banner is the KubeSphere welcome text once the kubesphere phase has finished.
	Banner string `json:"banner,omitempty"`
	// Console is the KubeSphere console URL, announced over mDNS for `ksboot watch`.
	Console string        `json:"console,omitempty"`
	Phases  []PhaseRecord `json:"phases,omitempty"`
	Error   string        `json:"error,omitempty"`
	// Retry counts the consecutive failed runs of one phase, so that the agent waits longer
	// before each new attempt; nil once a run did not fail.
	Retry   *Retry    `json:"retry,omitempty"`
	Updated time.Time `json:"updated"`
}

// Retry is a phase that failed on consecutive runs of the agent.
type Retry struct {
	Phase string `json:"phase"`
	// Failures is how many runs in a row ended with this phase failing.
	Failures int `json:"failures"`
	// Failed is when the last of them ended.
	Failed time.Time `json:"failed"`
}

// RecordFailure counts a run that ended with phase failing at time at: one more failure in a
// row if the same phase failed last time, else the first.
func (s *Status) RecordFailure(phase string, at time.Time) {
	if s.Retry == nil || s.Retry.Phase != phase {
		s.Retry = &Retry{Phase: phase}
	}
	s.Retry.Failures++
	s.Retry.Failed = at.UTC()
}

// PhaseRecord is the outcome of one phase run.
type PhaseRecord struct {
	Name     string    `json:"name"`
	Started  time.Time `json:"started"`
	Ended    time.Time `json:"ended,omitzero"`
	Outcome  string    `json:"outcome"`
	Duration string    `json:"duration,omitempty"`
	Error    string    `json:"error,omitempty"`
}

// Read loads the status under root; a missing file returns (nil, nil).
func Read(root string) (*Status, error) {
	data, err := os.ReadFile(filepath.Join(root, StatusFile))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading status: %w", err)
	}
	var s Status
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("reading status %s: %w", filepath.Join(root, StatusFile), err)
	}
	return &s, nil
}

// Write stores the status under root atomically with mode 0600 (it may name the cluster's
// layout, and later the KubeSphere initial password).
func Write(root string, s *Status) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding status: %w", err)
	}
	return WriteFileAtomic(filepath.Join(root, StatusFile), append(data, '\n'), 0o600)
}

// WriteFileAtomic writes data to path atomically (see package atomicfile); parent directories
// are created 0700 because the agent's state is private.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	return atomicfile.Write(path, data, mode, 0o700)
}
