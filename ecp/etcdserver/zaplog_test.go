package etcdserver_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"go.uber.org/zap"

	"github.com/ecpio/ecp/ecp/etcdserver"
)

// records is a slog.Handler keeping what it is given.
type records struct {
	mu   sync.Mutex
	min  slog.Level
	recs []slog.Record
}

func (h *records) Enabled(_ context.Context, l slog.Level) bool { return l >= h.min }
func (h *records) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r.Clone())
	return nil
}
func (h *records) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *records) WithGroup(string) slog.Handler      { return h }

func (h *records) all() []slog.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.recs)
}

func attrsOf(r slog.Record) map[string]string {
	m := map[string]string{}
	r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.String(); return true })
	return m
}

// TestScaleEtcdFatalIsLogged: at 10,000 agents the embedded etcd's WAL
// purge hit "too many open files" and called its logger's Fatal; ecp had
// given etcd a no-op logger, so the process exited 1 without a word. The
// bridged logger writes etcd's fatal line, with its error, into ecp's log
// before the exit.
func TestScaleEtcdFatalIsLogged(t *testing.T) {
	if os.Getenv("ECP_TEST_ETCD_FATAL") == "1" {
		logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("component", "etcd")
		etcdserver.ZapLogger(logger).Fatal("failed to purge wal file", zap.Error(syscall.EMFILE))
		return
	}
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestScaleEtcdFatalIsLogged$") //nolint:gosec // this test binary
	cmd.Env = append(os.Environ(), "ECP_TEST_ETCD_FATAL=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("etcd's Fatal: %v, want exit status 1 (etcd expects the process to end)", err)
	}
	for _, want := range []string{`"level":"ERROR"`, `"msg":"failed to purge wal file"`, `"component":"etcd"`, `"etcdLevel":"fatal"`, `"err":"too many open files"`} {
		if !strings.Contains(stderr.String(), want) {
			t.Fatalf("ecp's log before the exit is %q; it lacks %s", stderr.String(), want)
		}
	}
}

func TestZapLoggerLevels(t *testing.T) {
	h := &records{min: slog.LevelWarn}
	lg := etcdserver.ZapLogger(slog.New(h)).With(zap.String("member", "ecp"))
	lg.Info("chatty")
	lg.Warn("slow apply", zap.Duration("took", 0), zap.String("request content", `key:"/ecp/auth/tokens/0123abcd"`))
	lg.Error("lost leader", zap.Error(errors.New("boom")))
	got := h.all()
	if len(got) != 2 {
		t.Fatalf("got %d records at warn and above, want 2 (info is debug): %v", len(got), got)
	}
	if got[0].Level != slog.LevelWarn || got[0].Message != "slow apply" || got[1].Level != slog.LevelError || attrsOf(got[1])["err"] != "boom" {
		t.Fatalf("records %v %v, want warn \"slow apply\" then error \"lost leader\" with err=boom", got[0], attrsOf(got[1]))
	}
	if _, ok := attrsOf(got[0])["request content"]; ok {
		t.Fatalf("etcd's request content (keys holding token hashes) reached the log: %v", attrsOf(got[0]))
	}
	// etcd's debug lines (every request with its keys) never pass, even
	// with ecp at debug.
	h = &records{min: slog.LevelDebug}
	etcdserver.ZapLogger(slog.New(h)).Debug("request stats", zap.String("request content", "key"))
	if n := len(h.all()); n != 0 {
		t.Fatalf("%d etcd debug records reached ecp's debug log, want 0", n)
	}
}

// TestZapLoggerStopIsNoError: etcd's listeners closing when ecp stops it
// are logged at debug, not as the ERROR and WARN lines an operator saw on
// every clean stop; other errors stay errors.
func TestZapLoggerStopIsNoError(t *testing.T) {
	h := &records{min: slog.LevelInfo}
	lg := etcdserver.ZapLogger(slog.New(h))
	lg.Error("setting up serving from embedded etcd failed.", zap.Error(http.ErrServerClosed))
	lg.Error("setting up serving from embedded etcd failed.", zap.Error(&net.OpError{Op: "accept", Net: "tcp", Err: net.ErrClosed}))
	lg.Warn("stopping secure grpc server due to error", zap.Error(&net.OpError{Op: "accept", Net: "tcp", Err: net.ErrClosed}))
	lg.Error("lost leader", zap.Error(errors.New("boom")))
	got := h.all()
	if len(got) != 1 || got[0].Message != "lost leader" || got[0].Level != slog.LevelError {
		t.Fatalf("records at info and above %v, want only the error \"lost leader\"", got)
	}
}

// TestEmbeddedEtcdLogsIntoEcp: the member started by Start logs through
// ecp's logger.
func TestEmbeddedEtcdLogsIntoEcp(t *testing.T) {
	h := &records{min: slog.LevelDebug}
	srv, err := etcdserver.Start(t.Context(), etcdserver.Options{Dir: t.TempDir()}, slog.New(h))
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	for _, r := range h.all() {
		if attrsOf(r)["etcdLevel"] == "info" {
			return
		}
	}
	t.Fatalf("the embedded etcd logged nothing into ecp's log (%d records, all ecp's own)", len(h.all()))
}
