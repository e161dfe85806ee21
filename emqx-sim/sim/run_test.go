package sim

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

func TestRunTicksUntilStopped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := New(Options{TickInterval: time.Second, LogDir: t.TempDir(), LogRate: 3, ClientsPerNode: 5, Now: time.Now})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- s.Run(context.Background()) }()
		time.Sleep(10*time.Second + time.Millisecond)
		synctest.Wait()
		// Ten ticks of 3 lines, of which the info-level ones are filtered.
		if n := s.LogLinesWritten(); n < 10 || n > 30 {
			t.Fatalf("lines after 10 ticks = %d, want 10..30", n)
		}
		if err := s.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if err := s.Stop(context.Background()); err != nil {
			t.Fatalf("second Stop: %v", err)
		}
	})
}
