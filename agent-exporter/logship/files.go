package logship

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// fingerprintBytes bounds how much of a file's first line names the file.
// EMQX starts every line with a microsecond timestamp, so the first line is
// unique to one filling of one file: a wrap-around that overwrites
// emqx.log.1, a truncation or a rename is recognised by it.
const fingerprintBytes = 512

// logFile is one EMQX log file as seen by one scan.
type logFile struct {
	name        string
	path        string
	size        int64
	modTime     time.Time
	fingerprint string
}

// isLogFile matches EMQX's file handler output: the wrap files emqx.log.N
// and, in halt mode (rotation_size = infinity), the single emqx.log. The
// bookkeeping files emqx.log.idx and emqx.log.siz are not logs.
func isLogFile(name string) bool {
	if name == "emqx.log" {
		return true
	}
	n, ok := strings.CutPrefix(name, "emqx.log.")
	if !ok {
		return false
	}
	_, err := strconv.ParseUint(n, 10, 16)
	return err == nil
}

// scan lists the log files of dir with their fingerprints, oldest
// modification first (the order EMQX wrote them in). A file whose first
// line is not complete yet has no fingerprint and is left for a later scan.
func scan(dir string) ([]logFile, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading log dir: %w", err)
	}
	var files []logFile
	for _, de := range entries {
		if de.IsDir() || !isLogFile(de.Name()) {
			continue
		}
		p := filepath.Join(dir, de.Name())
		st, err := os.Stat(p)
		if err != nil || !st.Mode().IsRegular() || st.Size() == 0 {
			continue
		}
		fp, err := fingerprint(p)
		if err != nil || fp == "" {
			continue
		}
		files = append(files, logFile{name: de.Name(), path: p, size: st.Size(), modTime: st.ModTime(), fingerprint: fp})
	}
	slices.SortStableFunc(files, func(a, b logFile) int {
		if c := a.modTime.Compare(b.modTime); c != 0 {
			return c
		}
		return strings.Compare(a.name, b.name)
	})
	return files, nil
}

// fingerprint hashes the file's first line (up to fingerprintBytes); ""
// while that line is incomplete.
func fingerprint(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	buf := make([]byte, fingerprintBytes)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return "", err
	}
	buf = buf[:n]
	if i := bytes.IndexByte(buf, '\n'); i >= 0 {
		buf = buf[:i+1]
	} else if n < fingerprintBytes {
		return "", nil
	}
	sum := sha256.Sum256(buf)
	return hex.EncodeToString(sum[:16]), nil
}

// readLines reads complete lines of path from offset, at most maxBytes
// (but always at least one line if one is there). It returns the lines
// with their start offsets and the offset after the last one. A line
// longer than maxLine is cut into maxLine pieces rather than lost or
// allowed to exhaust memory.
func readLines(path string, from int64, maxBytes, maxLine, maxLines int, fn func(line []byte, off int64)) (int64, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return from, 0, err
	}
	defer f.Close()
	buf := make([]byte, maxBytes)
	n, err := f.ReadAt(buf, from)
	if err != nil && !errors.Is(err, io.EOF) {
		return from, 0, err
	}
	buf = buf[:n]
	pos, count := 0, 0
	for pos < len(buf) && count < maxLines {
		i := bytes.IndexByte(buf[pos:], '\n')
		switch {
		case i >= 0 && i <= maxLine:
			fn(buf[pos:pos+i], from+int64(pos))
			pos += i + 1
		case i > maxLine || len(buf)-pos >= maxLine:
			// An overlong line: ship its first maxLine bytes as one
			// entry and the rest as the following ones.
			fn(buf[pos:pos+maxLine], from+int64(pos))
			pos += maxLine
		default:
			// An incomplete last line: wait for its newline.
			return from + int64(pos), count, nil
		}
		count++
	}
	return from + int64(pos), count, nil
}
