package sim

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"testing"
	"time"
)

var textLine = regexp.MustCompile(`^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}[+-]\d\d:\d\d) \[(\w+)\] (.*)$`)

// newestLog returns the index of the most recently modified emqx.log.N.
func newestLog(t *testing.T, dir string) int {
	t.Helper()
	best, bestAt := 0, time.Time{}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		var n int
		if _, err := fmtSscanf(e.Name(), "emqx.log.%d", &n); err != nil {
			continue
		}
		st, _ := os.Stat(filepath.Join(dir, e.Name()))
		if st.ModTime().After(bestAt) {
			best, bestAt = n, st.ModTime()
		}
	}
	return best
}

func logFiles(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func TestLogRotationWraps(t *testing.T) {
	dir := t.TempDir()
	f := start(t, Options{LogDir: dir, LogRotationSize: 4096, LogRotationCount: 3})
	if err := f.sim.WriteLogs(10); err != nil {
		t.Fatal(err)
	}
	if got := logFiles(t, dir); !equalStrings(got, []string{"emqx.log.1", "emqx.log.idx", "emqx.log.siz"}) {
		t.Fatalf("files after a few lines: %v", got)
	}
	siz, _ := os.ReadFile(filepath.Join(dir, "emqx.log.siz"))
	if !bytes.Equal(siz, []byte{131, 104, 2, 98, 0, 0, 16, 0, 97, 3}) {
		t.Fatalf(".siz = %v, want term_to_binary({4096,3})", siz)
	}
	// Enough lines to fill the three files and wrap onto .1 again.
	if err := f.sim.WriteLogs(150); err != nil {
		t.Fatal(err)
	}
	if got := logFiles(t, dir); !equalStrings(got, []string{"emqx.log.1", "emqx.log.2", "emqx.log.3", "emqx.log.idx", "emqx.log.siz"}) {
		t.Fatalf("files after wrapping: %v", got)
	}
	for i := 1; i <= 3; i++ {
		st, _ := os.Stat(filepath.Join(dir, "emqx.log."+strconv.Itoa(i)))
		if st.Size() > 4096 {
			t.Fatalf("emqx.log.%d is %d bytes, over the rotation size", i, st.Size())
		}
	}
	active := f.sim.logs.cur
	if got := newestLog(t, dir); got != active {
		t.Fatalf("newest-modified file is .%d, the writer is on .%d", got, active)
	}
	idx, _ := os.ReadFile(filepath.Join(dir, "emqx.log.idx"))
	if len(idx) != 4 || int(idx[3]) != active {
		t.Fatalf(".idx = %v, active %d", idx, active)
	}
	// Every line parses and timestamps strictly increase within a file.
	for i := 1; i <= 3; i++ {
		checkTextFile(t, filepath.Join(dir, "emqx.log."+strconv.Itoa(i)))
	}
}

func checkTextFile(t *testing.T, path string) int {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	n := 0
	var last time.Time
	for sc.Scan() {
		m := textLine.FindStringSubmatch(sc.Text())
		if m == nil || levelRank(m[2]) < 0 {
			t.Fatalf("%s: unparsable line %q", path, sc.Text())
		}
		ts, err := time.Parse("2006-01-02T15:04:05.000000-07:00", m[1])
		if err != nil || !ts.After(last) {
			t.Fatalf("%s: timestamp %q not after %v", path, m[1], last)
		}
		last = ts
		n++
	}
	return n
}

func TestWriteLogsHundredThousandDeterministic(t *testing.T) {
	run := func() (files map[string][]byte) {
		dir := t.TempDir()
		f := start(t, Options{LogDir: dir, LogRotationSize: 2 << 20, LogRotationCount: 10, LogLevel: "debug"})
		if err := f.sim.WriteLogs(100_000); err != nil {
			t.Fatal(err)
		}
		if n := f.sim.LogLinesWritten(); n != 100_000 {
			t.Fatalf("wrote %d lines", n)
		}
		files = map[string][]byte{}
		for _, name := range logFiles(t, dir) {
			b, _ := os.ReadFile(filepath.Join(dir, name))
			files[name] = b
		}
		return files
	}
	a, b := run(), run()
	if len(a) < 5 {
		t.Fatalf("100,000 lines of 2 MiB files should rotate several times; files %d", len(a))
	}
	lines := 0
	for name, content := range a {
		if !bytes.Equal(content, b[name]) {
			t.Fatalf("%s differs between two runs with the same seed and clock", name)
		}
		if name != "emqx.log.idx" && name != "emqx.log.siz" {
			lines += bytes.Count(content, []byte("\n"))
		}
	}
	if lines != 100_000 {
		t.Fatalf("files hold %d lines, want 100000 (no wrap expected)", lines)
	}
}

func TestJSONLogFormat(t *testing.T) {
	dir := t.TempDir()
	f := start(t, Options{LogDir: dir, LogFormat: "json"})
	if err := f.sim.WriteLogs(50); err != nil {
		t.Fatal(err)
	}
	if err := f.sim.FailConnector("http:conn_0001", "econnrefused"); err != nil {
		t.Fatal(err)
	}
	fh, _ := os.Open(filepath.Join(dir, "emqx.log.1"))
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	n := 0
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		if jsonType(m["time"]) != "int" || m["time"].(float64) < 1e15 || jsonType(m["level"]) != "string" ||
			jsonType(m["msg"]) != "string" || jsonType(m["pid"]) != "string" || jsonType(m["line"]) != "int" {
			t.Fatalf("line %q lacks time(µs)/level/msg/pid/line", sc.Text())
		}
		if !bytes.HasPrefix(sc.Bytes(), []byte(`{"time":`)) || !bytes.Contains(sc.Bytes(), []byte(`,"level":`)) {
			t.Fatalf("line %q: time and level must lead", sc.Text())
		}
		n++
	}
	if n < 40 {
		t.Fatalf("only %d warning+ lines of 51", n)
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
