package etcdserver

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"slices"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// ZapLogger is a zap logger for etcd's code that writes to logger, so that
// what etcd says reaches ecp's log. etcd's info lines (dozens at every
// start, one per compaction and snapshot) are logged at debug; its
// warnings and errors at their level; its DPanic, Panic and Fatal lines at
// error, with etcdLevel naming the original. A Fatal still ends the
// process, as etcd expects (its periodic WAL purge calls Fatal on any
// error, "too many open files" included), but the reason is in ecp's log
// first instead of a silent exit 1.
//
// etcd's debug lines are dropped, and so is the "request content" of its
// slow-request warnings: both name the keys of requests, and some of ecp's
// keys hold token hashes, which never go to the log.
func ZapLogger(logger *slog.Logger) *zap.Logger {
	return zap.New(&slogCore{h: logger.Handler()})
}

// slogCore is a zapcore.Core writing to a slog.Handler.
type slogCore struct{ h slog.Handler }

// slogLevel maps zap's levels onto slog's (see ZapLogger).
func slogLevel(l zapcore.Level) slog.Level {
	switch {
	case l <= zapcore.InfoLevel:
		return slog.LevelDebug
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	default:
		return slog.LevelError
	}
}

func (c *slogCore) Enabled(l zapcore.Level) bool {
	// Fatal and Panic entries are always written: zap acts on them (exit,
	// panic) whether or not a core takes them.
	return l >= zapcore.DPanicLevel || (l > zapcore.DebugLevel && c.h.Enabled(context.Background(), slogLevel(l)))
}

func (c *slogCore) With(fields []zapcore.Field) zapcore.Core {
	return &slogCore{h: c.h.WithAttrs(attrs(fields))}
}

func (c *slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	level := slogLevel(e.Level)
	if (e.Level == zapcore.WarnLevel || e.Level == zapcore.ErrorLevel) && closedOnStop(fields) {
		// etcd reports its listeners closing as warnings and errors when
		// ecp stops it; an operator should not read them on every clean stop.
		level = slog.LevelDebug
		if !c.h.Enabled(context.Background(), level) {
			return nil
		}
	}
	r := slog.NewRecord(e.Time, level, e.Message, 0)
	// Say etcd's own level where ecp's differs from it.
	if level != slogLevel(e.Level) || e.Level != zapcore.WarnLevel && e.Level != zapcore.ErrorLevel {
		r.AddAttrs(slog.String("etcdLevel", e.Level.String()))
	}
	if e.LoggerName != "" {
		r.AddAttrs(slog.String("etcdLogger", e.LoggerName))
	}
	r.AddAttrs(attrs(fields)...)
	return c.h.Handle(context.Background(), r)
}

func (c *slogCore) Sync() error { return nil }

// closedOnStop says the entry's error is a server or listener closing.
func closedOnStop(fields []zapcore.Field) bool {
	for _, f := range fields {
		if err, ok := f.Interface.(error); ok && f.Type == zapcore.ErrorType &&
			(errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed)) {
			return true
		}
	}
	return false
}

// redactedField is the etcd field that names request keys.
const redactedField = "request content"

// attrs turns zap fields into slog attributes, sorted by key (zap's map
// encoder has no order); zap's "error" key becomes ecp's "err".
func attrs(fields []zapcore.Field) []slog.Attr {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fields {
		f.AddTo(enc)
	}
	keys := make([]string, 0, len(enc.Fields))
	for k := range enc.Fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]slog.Attr, 0, len(keys))
	for _, k := range keys {
		if k == redactedField {
			continue
		}
		name := k
		if k == "error" {
			name = "err"
		}
		out = append(out, slog.Any(name, enc.Fields[k]))
	}
	return out
}
