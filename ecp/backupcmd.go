package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/ecpio/ecp/ecp/app"
	"github.com/ecpio/ecp/ecp/backup"
)

// backupCmds are `ecp backup` and `ecp restore` with their flags.
type backupCmds struct {
	save, restore *kingpin.CmdClause
	target        backup.Target
	endpoints     string
	file          string
}

func addBackupCommands(ka *kingpin.Application) *backupCmds {
	b := &backupCmds{}
	b.save = ka.Command("backup", "Save ecp's state (every key under /ecp/ but running replicas' presence, digests and leaderships) from etcd to a file. With the embedded etcd, stop ecp first; with --etcd.endpoints, ecp may keep running. Sealed secrets stay sealed: keep --secrets.key-file safe apart from the backup.")
	b.save.Flag("output", "File to write the backup to (gzip'd JSON lines, mode 0600); - for standard output.").Required().StringVar(&b.file)
	b.restore = ka.Command("restore", "Write a backup into an empty etcd: a new or wiped --data.dir (ecp stopped), or an external cluster holding nothing under /ecp/. Start ecp afterwards with the same --secrets.key-file.")
	b.restore.Flag("input", "Backup file written by ecp backup; - for standard input.").Required().StringVar(&b.file)
	for _, c := range []*kingpin.CmdClause{b.save, b.restore} {
		c.Flag("data.dir", "Directory of the embedded etcd's data (unused with --etcd.endpoints).").Default(app.DefaultDataDir).StringVar(&b.target.DataDir)
		c.Flag("etcd.endpoints", "Comma-separated client URLs of an external etcd cluster; without them the embedded member in --data.dir.").StringVar(&b.endpoints)
		c.Flag("etcd.tls.ca-file", "PEM CA bundle that verifies the external etcd's server certificates (https:// endpoints); the system's roots when empty.").StringVar(&b.target.TLS.CAFile)
		c.Flag("etcd.tls.cert-file", "PEM client certificate presented to the external etcd (with --etcd.tls.key-file).").StringVar(&b.target.TLS.CertFile)
		c.Flag("etcd.tls.key-file", "PEM private key of --etcd.tls.cert-file.").StringVar(&b.target.TLS.KeyFile)
	}
	return b
}

// run performs the parsed command and says what it saved or restored.
func (b *backupCmds) run(cmd string, stdout, stderr io.Writer) int {
	for _, e := range strings.Split(b.endpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			b.target.Endpoints = append(b.target.Endpoints, e)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// etcd's own log goes to stderr at warn, so stdout holds the summary
	// (or the backup itself with --output -).
	b.target.Existing = cmd == b.save.FullCommand()
	cli, closeFn, err := b.target.Connect(ctx, slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "ecp: %v\n", err)
		return exitError
	}
	defer closeFn()
	var sum backup.Summary
	switch cmd {
	case b.save.FullCommand():
		out, closeOut := stdout, func() error { return nil }
		if b.file != "-" {
			f, err := os.OpenFile(b.file, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
			if err != nil {
				_, _ = fmt.Fprintf(stderr, "ecp: --output: %v\n", err)
				return exitError
			}
			out, closeOut = f, f.Close
		}
		sum, err = backup.Save(ctx, cli, out, time.Now())
		if cerr := closeOut(); err == nil && cerr != nil {
			err = fmt.Errorf("write %s: %w", b.file, cerr)
		}
	default:
		in := io.Reader(os.Stdin)
		if b.file != "-" {
			f, err := os.Open(b.file)
			if err != nil {
				_, _ = fmt.Fprintf(stderr, "ecp: --input: %v\n", err)
				return exitError
			}
			defer func() { _ = f.Close() }()
			in = f
		}
		sum, err = backup.Restore(ctx, cli, in)
	}
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "ecp %s: %v\n", cmd, err)
		return exitError
	}
	report := stdout
	if b.file == "-" && cmd == b.save.FullCommand() {
		report = stderr
	}
	_, _ = fmt.Fprintf(report, "ecp %s: %s at etcd revision %d\n", cmd, sum, sum.Revision)
	return exitOK
}
