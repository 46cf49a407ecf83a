package runner

import (
	"testing"

	"github.com/batch-tool/batch/internal/stability"
)

// TestOutcome: a job's status and message follow from all of its images,
// and the message counts the filtered ones.
func TestOutcome(t *testing.T) {
	const (
		ok       = stability.FinishSuccess
		filtered = stability.FinishContentFiltered
		failed   = stability.FinishError
	)
	tests := []struct {
		name    string
		reasons []string
		status  Status
		msg     string
	}{
		{"none", nil, Failed, "the API returned no images"},
		{"one fine", []string{ok}, Succeeded, ""},
		{"two fine", []string{ok, ok}, Succeeded, ""},
		{"the only one filtered", []string{filtered}, Filtered, "image 1 was content filtered"},
		{"both filtered", []string{filtered, filtered}, Filtered, "2 of 2 images were content filtered"},
		{"the second of two filtered", []string{ok, filtered}, Filtered, "image 2 of 2 was content filtered"},
		{"two of three filtered", []string{filtered, ok, filtered}, Filtered, "2 of 3 images were content filtered"},
		{"filtered then an error", []string{filtered, failed}, Failed, "image 2 finished with ERROR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			images := make([]Image, len(tt.reasons))
			for i, r := range tt.reasons {
				images[i].FinishReason = r
			}
			st, msg := outcome(images)
			if st != tt.status || msg != tt.msg {
				t.Errorf("outcome(%v) = %s, %q; want %s, %q", tt.reasons, st, msg, tt.status, tt.msg)
			}
		})
	}
}
