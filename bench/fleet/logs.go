package main

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/ecpio/ecp/agentproto"
	"github.com/ecpio/ecp/bench/internal/agentsim"
)

// maxLogLines bounds --logs.lines: one agent's lines of one interval fit in
// a batch ecp takes (logs.DefaultMaxBatchLines is 20,000).
const maxLogLines = 10000

// logState is one agent's log shipping, as the real agent keeps it: lines
// are numbered in the order EMQX wrote them, and the agent advances past a
// line only once ecp acknowledged it; refused lines are sent again with
// the next interval's.
type logState struct {
	mu sync.Mutex
	// base is the time of line 0; made the lines written so far, acked
	// the lines acknowledged.
	base        time.Time
	made, acked int64
	step        time.Duration
}

// pending is how many lines the agent holds unacknowledged.
func (l *logState) pending() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.made - l.acked
}

// lineBytes is the length of each line written, so that line i sits at
// offset i*lineBytes of the agent's log file.
const lineBytes = 160

// batch writes this interval's n new lines and returns every unacknowledged
// one, up to two intervals' worth, as the next batch. Line i is the same
// text at the same time and offset each time it is sent, and the batch id
// names the range, so a batch sent again unchanged keeps its id.
func (a *agent) batch(n int, interval time.Duration) agentproto.LogBatch {
	l := &a.logs
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.base.IsZero() {
		l.base, l.step = time.Now(), interval/time.Duration(n)
	}
	l.made += int64(n)
	end := min(l.made, l.acked+2*int64(n))
	b := agentproto.LogBatch{BatchID: fmt.Sprintf("bench-%d-%d", l.acked, end), Lines: make([]agentproto.LogEntry, 0, end-l.acked)}
	node := fmt.Sprintf("emqx@n1.c%05d", a.index)
	for i := l.acked; i < end; i++ {
		at := l.base.Add(time.Duration(i) * l.step).UTC()
		level, msg := "info", "client connected"
		if i%10 == 9 {
			level, msg = "warning", "client disconnected"
		}
		clientID := fmt.Sprintf("dev-%05d-%d", a.index, i%1000)
		raw := fmt.Sprintf("%s [%s] clientid: %s, msg: %s, peername: 10.0.%d.%d:%d, line: %d",
			at.Format("2006-01-02T15:04:05.000000Z07:00"), level, clientID, msg, a.index%250, i%250, 1024+i%60000, i)
		b.Lines = append(b.Lines, agentproto.LogEntry{Time: at, Level: level, Node: node, Message: msg,
			Fields: map[string]string{"clientid": clientID}, Raw: raw, File: "emqx.log.1", Offset: i * lineBytes})
	}
	return b
}

// ack advances past the batch's lines once ecp stored them.
func (a *agent) ack(b agentproto.LogBatch) {
	a.logs.mu.Lock()
	a.logs.acked += int64(len(b.Lines))
	a.logs.mu.Unlock()
}

// shipLogs sends the agent's next log batch and counts its lines accepted
// or refused.
func (a *agent) shipLogs(ctx context.Context, hc *http.Client, base string, cfg config, res *results) (int, error) {
	b := a.batch(cfg.logLines, cfg.interval)
	var out agentproto.LogBatchResponse
	code, err := agentsim.Post(ctx, hc, base+agentproto.PathLogs, a.cred, b, &out)
	switch {
	case err != nil:
	case code == http.StatusOK:
		a.ack(b)
		res.linesAccepted.Add(int64(len(b.Lines)))
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
		res.linesRefused.Add(int64(len(b.Lines)))
	}
	return code, err
}

// countPush counts the samples of a push ecp refused, which the real agent
// keeps and sends again.
func (r *results) countPush(code int, err error, series int) {
	if err == nil && (code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable) {
		r.rwRefused.Add(int64(series))
	}
}
