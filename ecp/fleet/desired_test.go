package fleet

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/ecp/etcdserver/etcdtest"
)

// TestHeldPollOnTheWire checks what a poll whose connection the fleet took
// over answers, byte for byte where net/http would decide, and that the
// connection then serves the agent's next request.
func TestHeldPollOnTheWire(t *testing.T) {
	cli := etcdtest.Client(t)
	f := startFleet(t, cli, newClock(), "r1")
	putSpec(t, cli, "c1", 10)
	a := newAgent(f.url)
	reg := mustRegister(t, a, issue(t, f, "c1", time.Hour))
	rev := reg.Desired.Revision

	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer hc.CloseIdleConnections()
	get := func(t *testing.T, after int64, timeout string) (*http.Response, string, bool) {
		t.Helper()
		var reused bool
		ctx := httptrace.WithClientTrace(t.Context(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { reused = i.Reused }})
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s%s?%s=%d&%s=%s", f.url, agentproto.PathDesired, agentproto.QueryAfter, after, agentproto.QueryTimeout, timeout), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+a.cred)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(b), reused
	}

	// Not held: net/http writes it; the reference for the held reply.
	ref, refBody, _ := get(t, 0, "30s")
	if ref.StatusCode != http.StatusOK {
		t.Fatalf("unheld poll status %d", ref.StatusCode)
	}

	t.Run("timeout", func(t *testing.T) {
		resp, body, _ := get(t, rev, "20ms")
		if resp.StatusCode != http.StatusNoContent || body != "" || resp.ContentLength > 0 || resp.Header.Get("Date") == "" {
			t.Fatalf("held timeout answered %d %v %q, want an empty 204 with a Date", resp.StatusCode, resp.Header, body)
		}
		if got := count204(t, f); got != 1 {
			t.Fatalf("%d long-polls observed with status 204, want 1", got)
		}
	})
	t.Run("next request reuses the connection", func(t *testing.T) {
		resp, _, reused := get(t, 0, "30s")
		if resp.StatusCode != http.StatusOK || !reused {
			t.Fatalf("status %d, reused %v; want 200 on the kept-alive connection", resp.StatusCode, reused)
		}
	})
	t.Run("change", func(t *testing.T) {
		type result struct {
			resp   *http.Response
			body   string
			reused bool
		}
		done := make(chan result, 1)
		go func() {
			resp, body, reused := get(t, rev, "30s")
			done <- result{resp, body, reused}
		}()
		f.waitFor(t, "long-poll waiting", func() bool { return testutil.ToFloat64(f.metrics.waiters) == 1 })
		newRev := putSpec(t, cli, "c1", 25)
		r := <-done
		if r.resp.StatusCode != http.StatusOK || r.resp.Header.Get("Content-Type") != ref.Header.Get("Content-Type") ||
			r.resp.ContentLength != int64(len(r.body)) || !strings.HasSuffix(r.body, "\n") {
			t.Fatalf("held change answered %d %v %q; unheld reference %v %q", r.resp.StatusCode, r.resp.Header, r.body, ref.Header, refBody)
		}
		d := decodeBody[agentproto.DesiredState](t, reply{status: r.resp.StatusCode, body: []byte(r.body)})
		if d.MaxConnections != 25 || d.Revision != newRev {
			t.Fatalf("got %+v, want max 25 at revision %d", d, newRev)
		}
		if testutil.ToFloat64(f.metrics.waiters) != 0 {
			t.Fatal("answered poll still counted as waiting")
		}
	})
}

// count204 is how many desired-state polls the latency histogram counted
// as answered 204.
func count204(t *testing.T, f *testFleet) uint64 {
	t.Helper()
	return countRequests(t, f, agentproto.PathDesired, "204")
}

// countRequests is how many requests to route the latency histogram
// counted as answered code.
func countRequests(t *testing.T, f *testFleet, route, code string) uint64 {
	t.Helper()
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "ecp_http_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["route"] == route && labels["code"] == code {
				return m.GetHistogram().GetSampleCount()
			}
		}
	}
	return 0
}

// TestWaitersLimitOnH2Streams: long-polls parked as HTTP/2 streams of one
// connection count against MaxWaiters like polls on their own connections;
// beyond it the next stream gets 429 with Retry-After in the envelope.
func TestWaitersLimitOnH2Streams(t *testing.T) {
	cli := etcdtest.Client(t)
	f := startFleet(t, cli, newClock(), "r1", func(o *Options) { o.MaxWaiters = 2 })
	putSpec(t, cli, "c1", 10)
	a := newAgent(f.url)
	rev := mustRegister(t, a, issue(t, f, "c1", time.Hour)).Desired.Revision

	r := mux.NewRouter()
	f.Register(r)
	srv := httptest.NewUnstartedServer(r)
	var conns atomic.Int64
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	defer srv.Close()
	tr := &http.Transport{MaxConnsPerHost: 1, Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	poll := func() (*http.Response, []byte, error) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, fmt.Sprintf("%s%s?%s=%d&%s=30s", srv.URL, agentproto.PathDesired, agentproto.QueryAfter, rev, agentproto.QueryTimeout), nil)
		if err != nil {
			return nil, nil, err
		}
		req.Header.Set("Authorization", "Bearer "+a.cred)
		resp, err := hc.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, b, err
	}
	held := make(chan int, 2)
	for range 2 {
		go func() {
			resp, _, err := poll()
			if err != nil {
				held <- 0
				return
			}
			held <- resp.StatusCode
		}()
	}
	f.waitFor(t, "two long-polls waiting", func() bool { return testutil.ToFloat64(f.metrics.waiters) == 2 })
	resp, body, err := poll()
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "5" || resp.ProtoMajor != 2 ||
		!strings.Contains(string(body), `"code":"`+agentproto.CodeRateLimited+`"`) {
		t.Fatalf("third poll: %s %d Retry-After %q %s; want 429 with Retry-After 5 in the envelope", resp.Proto, resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	putSpec(t, cli, "c1", 25)
	for range 2 {
		if code := <-held; code != http.StatusOK {
			t.Fatalf("held poll answered %d, want 200 with the change", code)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections, want the three polls as streams of one", n)
	}
}
