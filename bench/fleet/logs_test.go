package main

import (
	"testing"
	"time"
)

// TestLogBatchResendsRefusedLines: the lines of a batch that was not
// acknowledged come back (same text, time and offset, so the store's log_id
// is the same) ahead of the next interval's lines, as the real agent
// resends what ecp refused; acknowledged lines never come back.
func TestLogBatchResendsRefusedLines(t *testing.T) {
	a := &agent{index: 7}
	first := a.batch(3, 3*time.Second)
	if len(first.Lines) != 3 || first.Lines[0].Offset != 0 || first.Lines[2].Offset != 2*lineBytes {
		t.Fatalf("first batch %+v, want lines 0..2", first)
	}
	// Refused: not acknowledged, the next interval adds 3 lines.
	second := a.batch(3, 3*time.Second)
	if len(second.Lines) != 6 || second.Lines[0].Raw != first.Lines[0].Raw || !second.Lines[0].Time.Equal(first.Lines[0].Time) {
		t.Fatalf("after a refusal got %d lines starting %q, want the 3 refused ones again then 3 new", len(second.Lines), second.Lines[0].Raw)
	}
	if p := a.logs.pending(); p != 6 {
		t.Errorf("pending %d, want 6", p)
	}
	a.ack(second)
	third := a.batch(3, 3*time.Second)
	if len(third.Lines) != 3 || third.Lines[0].Offset != 6*lineBytes || third.BatchID == second.BatchID {
		t.Errorf("after the ack got %d lines from offset %d, id %s; want lines 6..8 under a new id", len(third.Lines), third.Lines[0].Offset, third.BatchID)
	}
	if p := a.logs.pending(); p != 3 {
		t.Errorf("pending %d, want 3", p)
	}
}
