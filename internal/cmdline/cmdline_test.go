package cmdline_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ecpio/ecp/internal/cmdline"
)

type flags struct {
	app                   *cmdline.App
	stdout, stderr        bytes.Buffer
	count                 int
	password, file        string
	force, verify         bool
	interval              time.Duration
	intervalSet, countSet bool
}

func newFlags() *flags {
	f := &flags{}
	f.app = cmdline.New("tool", "A tool.", &f.stdout, &f.stderr)
	f.app.Flag("count", "How many.").Default("3").IsSetByUser(&f.countSet).IntVar(&f.count)
	f.app.Flag("password", "A password.").StringVar(&f.password)
	f.app.Flag("file", "A file.").StringVar(&f.file)
	f.app.Flag("force", "Force.").BoolVar(&f.force)
	f.app.Flag("verify", "Verify.").Default("true").BoolVar(&f.verify)
	f.app.Flag("interval", "How often.").Default("15s").IsSetByUser(&f.intervalSet).DurationVar(&f.interval)
	return f
}

// The binaries moved from Go's flag package to kingpin; what operators
// wrote for the old parser with two dashes still means the same.
func TestGoFlagSpellingsStillParse(t *testing.T) {
	dir := t.TempDir()
	// A value starting with @ is a value, never a file of arguments.
	if err := os.WriteFile(filepath.Join(dir, "args"), []byte("--count\n7\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	for _, tc := range []struct {
		name string
		args []string
		want func(*flags) bool
	}{
		{"value after a space", []string{"--count", "5"}, func(f *flags) bool { return f.count == 5 && f.countSet }},
		{"value after =", []string{"--count=5"}, func(f *flags) bool { return f.count == 5 && f.countSet }},
		{"negative value", []string{"--count", "-1"}, func(f *flags) bool { return f.count == -1 }},
		{"value starting with a dash", []string{"--password", "-secret"}, func(f *flags) bool { return f.password == "-secret" }},
		{"value that looks like a flag", []string{"--password", "--force"}, func(f *flags) bool { return f.password == "--force" && !f.force }},
		{"value starting with @", []string{"--password", "@args"}, func(f *flags) bool { return f.password == "@args" && f.count == 3 }},
		{"bool", []string{"--force"}, func(f *flags) bool { return f.force }},
		{"bool=true", []string{"--force=true"}, func(f *flags) bool { return f.force }},
		{"bool=false", []string{"--verify=false"}, func(f *flags) bool { return !f.verify }},
		{"negated bool", []string{"--no-verify"}, func(f *flags) bool { return !f.verify }},
		{"defaults", nil, func(f *flags) bool {
			return f.count == 3 && f.verify && !f.force && f.interval == 15*time.Second && !f.countSet && !f.intervalSet
		}},
		{"given default is given", []string{"--interval", "15s"}, func(f *flags) bool { return f.intervalSet }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFlags()
			_, helped, err := f.app.Parse(tc.args)
			if err != nil || helped || !tc.want(f) {
				t.Fatalf("Parse(%q) = helped %v, err %v; flags %+v", tc.args, helped, err, f)
			}
		})
	}
}

func TestHelpReturnsInsteadOfExiting(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"--count", "1", "--help"}} {
		f := newFlags()
		_, helped, err := f.app.Parse(args)
		if !helped || err != nil || !strings.Contains(f.stdout.String(), "--count=3") || f.stderr.Len() > 0 {
			t.Fatalf("Parse(%q) = helped %v, err %v; stdout %q stderr %q", args, helped, err, f.stdout.String(), f.stderr.String())
		}
	}
}

// Errors name the flag, as Go's flag package's did, also where the value
// is what is wrong.
func TestErrorsNameTheFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--nope"}, "unknown long flag '--nope'"},
		{[]string{"--count", "x"}, `invalid value "x" for --count`},
		{[]string{"--interval=soon"}, `invalid value "soon" for --interval: time: invalid duration "soon"`},
		{[]string{"--count"}, "expected argument for flag '--count'"},
		{[]string{"--force=maybe"}, "unexpected maybe"},
		{[]string{"stray"}, "unexpected stray"},
		{[]string{"-count", "1"}, "-count: flags take two dashes: --count"},
		{[]string{"-verify=false"}, "-verify=false: flags take two dashes: --verify=false"},
		{[]string{"-help"}, "-help: flags take two dashes: --help"},
	} {
		f := newFlags()
		_, helped, err := f.app.Parse(tc.args)
		if helped || err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = helped %v, err %v; want an error containing %q", tc.args, helped, err, tc.want)
		}
	}
}
