package docscheck

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ecpio/ecp/agent-exporter/daemon"
	"github.com/ecpio/ecp/ecp/app"
)

// docFile is the page under test, relative to the module root.
const docFile = "CONFIGURATION.md"

// binaries are the commands whose flags CONFIGURATION.md documents, by
// package directory.
var binaries = []string{"ecp", "agent-exporter", "emqx-sim", "demo"}

// envDirs are the source trees whose environment variables must be
// documented (bench/ is a developer tool with its own README).
var envDirs = []string{"ecp", "agent-exporter", "emqx-sim", "demo", "internal"}

// command is one binary and subcommand whose help lists flags.
type command struct {
	bin  string
	args []string // subcommand, if any
}

// title is how CONFIGURATION.md names the command in a heading: `ecp serve`.
func (c command) title() string { return strings.Join(append([]string{c.bin}, c.args...), " ") }

func TestConfigurationDocumentsEveryFlag(t *testing.T) {
	if testing.Short() {
		t.Skip("builds every binary; skipped with -short")
	}
	root := moduleRoot(t)
	doc := readDoc(t, root)
	bin := buildBinaries(t, root)

	for _, c := range discoverCommands(t, bin) {
		t.Run(c.title(), func(t *testing.T) {
			flags := helpFlags(t, bin, c)
			section, ok := doc.section(c.title())
			if !ok {
				t.Fatalf("%s has no section for `%s` (a heading naming it in backquotes); its flags: %s",
					docFile, c.title(), strings.Join(dashed(flags), ", "))
			}
			var missing []string
			for _, f := range flags {
				if !strings.Contains(section, "`--"+f+"`") && !strings.Contains(section, "`--[no-]"+f+"`") {
					missing = append(missing, "--"+f)
				}
			}
			if len(missing) > 0 {
				t.Errorf("%s, section `%s`, does not document %s (write each as `--name` in the section)",
					docFile, c.title(), strings.Join(missing, ", "))
			}
			var stale []string
			for _, f := range tableFlags(section) {
				if !slices.Contains(flags, f) {
					stale = append(stale, "--"+f)
				}
			}
			if len(stale) > 0 {
				t.Errorf("%s, section `%s`, documents %s, which `%s --help` does not list",
					docFile, c.title(), strings.Join(stale, ", "), c.title())
			}
		})
	}
}

func TestConfigurationDocumentsEnvironment(t *testing.T) {
	root := moduleRoot(t)
	doc := readDoc(t, root)
	vars := envVars(t, root)
	if len(vars) == 0 {
		t.Fatal("found no os.Getenv calls at all; the scan is broken")
	}
	for _, v := range vars {
		if !strings.Contains(doc.text, "`"+v+"`") {
			t.Errorf("%s does not document the environment variable `%s`", docFile, v)
		}
	}
}

func TestConfigurationDocumentsConfigFiles(t *testing.T) {
	doc := readDoc(t, moduleRoot(t))
	for _, tc := range []struct {
		heading string
		typ     reflect.Type
	}{
		{"ecp serve --config.file", reflect.TypeFor[app.Config]()},
		{"agent-exporter run --config.file", reflect.TypeFor[daemon.Config]()},
	} {
		t.Run(tc.heading, func(t *testing.T) {
			section, ok := doc.section(tc.heading)
			if !ok {
				t.Fatalf("%s has no section for `%s`", docFile, tc.heading)
			}
			fields := yamlPaths(tc.typ, "")
			if len(fields) == 0 {
				t.Fatalf("%s has no yaml fields; the scan is broken", tc.typ)
			}
			for _, f := range fields {
				if !strings.Contains(section, "`"+f+"`") {
					t.Errorf("%s, section `%s`, does not document the field `%s`", docFile, tc.heading, f)
				}
			}
		})
	}
}

func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
		t.Fatalf("module root not found at %s: %v", dir, err)
	}
	return dir
}

func buildBinaries(t *testing.T, root string) string {
	t.Helper()
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	args := []string{"build", "-o", out + string(filepath.Separator)}
	for _, b := range binaries {
		args = append(args, "./"+b)
	}
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	return out
}

// run runs a built binary and returns what it printed. Help exits 0, or 2
// where a command treats -h as a usage error (demo does).
func run(t *testing.T, bin string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	exe := filepath.Join(bin, name)
	if runtime.GOOS == "windows" {
		exe += ".exe"
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Stdin = nil
	b, err := cmd.CombinedOutput()
	if ee, ok := errors.AsType[*exec.ExitError](err); ok && ee.ExitCode() == 2 && len(b) > 0 {
		err = nil
	}
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, b)
	}
	return string(b)
}

var (
	// kingpin (ecp): "  -h, --[no-]help", "      --web.listen-address=…".
	kingpinFlag = regexp.MustCompile(`^(?:  -\S, |      )--(?:\[no-\])?([A-Za-z0-9][A-Za-z0-9._-]*)`)
	// Go's flag package (agent-exporter, emqx-sim, demo): "  -state.dir string".
	goFlag = regexp.MustCompile(`^  -([A-Za-z0-9][A-Za-z0-9._-]*)(?:\s|$)`)
	// kingpin's command list: "serve [<flags>]" at the start of a line.
	kingpinCommand = regexp.MustCompile(`^([a-z][a-z0-9-]*)(?:\s|$)`)
	// agent-exporter's usage: "  run          run the agent daemon".
	usageCommand = regexp.MustCompile(`^  ([a-z][a-z0-9-]*)\s{2,}\S`)
)

// discoverCommands lists every binary and subcommand from the binaries'
// own help, so a new subcommand is checked without editing this test.
func discoverCommands(t *testing.T, bin string) []command {
	t.Helper()
	var cmds []command
	// ecp: kingpin, "Commands:" section.
	inCommands := false
	for _, line := range lines(run(t, bin, "ecp", "--help")) {
		if strings.HasPrefix(line, "Commands:") {
			inCommands = true
			continue
		}
		// kingpin may print its usage twice; list each command once.
		if m := kingpinCommand.FindStringSubmatch(line); inCommands && m != nil && m[1] != "help" && !slices.ContainsFunc(cmds, func(c command) bool { return c.args[0] == m[1] }) {
			cmds = append(cmds, command{bin: "ecp", args: []string{m[1]}})
		}
	}
	// agent-exporter: its own usage text, "commands:" section.
	inCommands = false
	for _, line := range lines(run(t, bin, "agent-exporter", "help")) {
		if strings.HasPrefix(line, "commands:") {
			inCommands = true
			continue
		}
		if m := usageCommand.FindStringSubmatch(line); inCommands && m != nil && m[1] != "help" {
			cmds = append(cmds, command{bin: "agent-exporter", args: []string{m[1]}})
		}
	}
	cmds = append(cmds, command{bin: "emqx-sim"}, command{bin: "demo"})
	for _, want := range []string{"ecp serve", "ecp version", "agent-exporter run", "agent-exporter register"} {
		if !slices.ContainsFunc(cmds, func(c command) bool { return c.title() == want }) {
			t.Fatalf("command discovery found no %q in the help texts (found %v); the parsing is broken", want, cmds)
		}
	}
	return cmds
}

// helpFlags runs the command's help and returns the flag names it lists,
// without help itself.
func helpFlags(t *testing.T, bin string, c command) []string {
	t.Helper()
	help := "-h"
	if c.bin == "ecp" {
		help = "--help"
	}
	out := run(t, bin, c.bin, append(slices.Clone(c.args), help)...)
	var flags []string
	for _, line := range lines(out) {
		m := kingpinFlag.FindStringSubmatch(line)
		if m == nil {
			m = goFlag.FindStringSubmatch(line)
		}
		if m != nil && m[1] != "help" && m[1] != "h" && !slices.Contains(flags, m[1]) {
			flags = append(flags, m[1])
		}
	}
	return flags
}

func lines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

func dashed(flags []string) []string {
	out := make([]string, len(flags))
	for i, f := range flags {
		out[i] = "--" + f
	}
	return out
}

// doc is CONFIGURATION.md.
type doc struct {
	text  string
	lines []string
}

func readDoc(t *testing.T, root string) doc {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, docFile))
	if err != nil {
		t.Fatalf("read %s: %v", docFile, err)
	}
	return doc{text: string(b), lines: lines(string(b))}
}

var heading = regexp.MustCompile("^(#+) ")

// section returns the text under the first heading that names title in
// backquotes, up to the next heading of the same or a higher level.
func (d doc) section(title string) (string, bool) {
	for i, line := range d.lines {
		m := heading.FindStringSubmatch(line)
		if m == nil || !strings.Contains(line, "`"+title+"`") {
			continue
		}
		level := len(m[1])
		var b strings.Builder
		for _, l := range d.lines[i+1:] {
			if n := heading.FindStringSubmatch(l); n != nil && len(n[1]) <= level {
				break
			}
			b.WriteString(l)
			b.WriteByte('\n')
		}
		return b.String(), true
	}
	return "", false
}

var tableFlag = regexp.MustCompile("^\\| *`--(?:\\[no-\\])?([A-Za-z0-9][A-Za-z0-9._-]*)`")

// tableFlags are the flags a section documents in the first column of its
// tables.
func tableFlags(section string) []string {
	var out []string
	for _, l := range lines(section) {
		if m := tableFlag.FindStringSubmatch(l); m != nil {
			out = append(out, m[1])
		}
	}
	return out
}

var getenv = regexp.MustCompile(`os\.(?:Getenv|LookupEnv)\("([A-Z0-9_]+)"\)`)

// envVars returns the environment variables the non-test code reads.
func envVars(t *testing.T, root string) []string {
	t.Helper()
	var vars []string
	for _, d := range envDirs {
		err := filepath.WalkDir(filepath.Join(root, d), func(path string, e os.DirEntry, err error) error {
			if err != nil || e.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range getenv.FindAllStringSubmatch(string(b), -1) {
				if !slices.Contains(vars, m[1]) {
					vars = append(vars, m[1])
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("scan %s: %v", d, err)
		}
	}
	slices.Sort(vars)
	return vars
}

// yamlPaths lists the dotted YAML paths of a configuration struct's leaves.
func yamlPaths(typ reflect.Type, prefix string) []string {
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	var out []string
	for i := range typ.NumField() {
		f := typ.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		path := prefix + name
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct && ft.PkgPath() != "time" {
			if sub := yamlPaths(ft, path+"."); len(sub) > 0 {
				out = append(out, sub...)
				continue
			}
		}
		out = append(out, path)
	}
	return out
}

func TestYAMLPaths(t *testing.T) {
	type inner struct {
		A int `yaml:"a"`
		B int `yaml:"b,omitempty"`
	}
	type outer struct {
		In    *inner        `yaml:"in"`
		D     time.Duration `yaml:"d"`
		Skip  int           `yaml:"-"`
		NoTag int
	}
	got := yamlPaths(reflect.TypeFor[outer](), "")
	want := []string{"in.a", "in.b", "d"}
	if !slices.Equal(got, want) {
		t.Errorf("yamlPaths = %v, want %v", got, want)
	}
}

func TestSection(t *testing.T) {
	d := doc{lines: lines("# Top\n## `ecp serve`\nA `--x`\n### `ecp serve --config.file`\nF\n## `ecp version`\nV\n")}
	for _, tc := range []struct {
		title, want string
		ok          bool
	}{
		{"ecp serve", "A `--x`\n### `ecp serve --config.file`\nF\n", true},
		{"ecp serve --config.file", "F\n", true},
		{"ecp version", "V\n", true},
		{"ecp nope", "", false},
	} {
		t.Run(tc.title, func(t *testing.T) {
			got, ok := d.section(tc.title)
			if got != tc.want || ok != tc.ok {
				t.Errorf("section(%q) = %q, %v; want %q, %v", tc.title, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestHelpParsing(t *testing.T) {
	for _, tc := range []struct {
		line, want string
	}{
		{"  -h, --[no-]help                Show context-sensitive help (also try", "help"},
		{`      --web.listen-address="127.0.0.1:8080"  `, "web.listen-address"},
		{"      --[no-]smtp.require-tls    Insist on STARTTLS.", "smtp.require-tls"},
		{"      --config.file=CONFIG.FILE  YAML configuration file", "config.file"},
		{"  -state.dir string", "state.dir"},
		{"  -force", "force"},
		{"                                 --help-long and --help-man).", ""},
		{"    \tLog file; \"-\" logs to standard error.", ""},
	} {
		t.Run(tc.line, func(t *testing.T) {
			m := kingpinFlag.FindStringSubmatch(tc.line)
			if m == nil {
				m = goFlag.FindStringSubmatch(tc.line)
			}
			got := ""
			if m != nil {
				got = m[1]
			}
			if got != tc.want {
				t.Errorf("flag in %q = %q, want %q", tc.line, got, tc.want)
			}
		})
	}
}
