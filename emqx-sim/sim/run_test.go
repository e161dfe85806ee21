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

// TestConcurrentUse runs the ticking model, API readers and fault writers at
// once; with -race it proves the model is guarded.
func TestConcurrentUse(t *testing.T) {
	f := start(t, Options{TickInterval: time.Millisecond, LogDir: t.TempDir(), Now: time.Now})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = f.sim.Run(ctx)
	}()
	tok := f.admin(t)
	paths := []string{"/api/v5/nodes", "/api/v5/rules", "/api/v5/connectors", "/api/v5/actions",
		"/api/v5/monitor_current", "/api/v5/prometheus/data_integration", "/api/v5/prometheus/stats", "/api/v5/alarms"}
	errs := make(chan string, 4)
	for w := range 4 {
		go func() {
			for i := range 40 {
				p := paths[(w+i)%len(paths)]
				if r := f.req(t, "GET", p, tok, ""); r.status != 200 {
					errs <- p
					return
				}
				switch i % 4 {
				case 0:
					_ = f.sim.FailConnector("http:conn_0001", "econnrefused")
				case 1:
					_ = f.sim.HealConnector("http:conn_0001")
				case 2:
					_ = f.sim.WriteLogs(10)
				case 3:
					f.sim.ResetLicense()
				}
			}
			errs <- ""
		}()
	}
	for range 4 {
		if p := <-errs; p != "" {
			t.Errorf("GET %s failed under concurrency", p)
		}
	}
	cancel()
	<-done
}
