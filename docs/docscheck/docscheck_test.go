package docscheck

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"

	"github.com/ecpio/ecp/agent-exporter/daemon"
	"github.com/ecpio/ecp/ecp/alerting"
	"github.com/ecpio/ecp/ecp/alerts"
	"github.com/ecpio/ecp/ecp/app"
	"github.com/ecpio/ecp/rules"
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
				names := make([]string, len(flags))
				for i, f := range flags {
					names[i] = "--" + f.name
				}
				t.Fatalf("%s has no section for `%s` (a heading naming it in backquotes); its flags: %s",
					docFile, c.title(), strings.Join(names, ", "))
			}
			rows := tableRows(section)
			var missing []string
			for _, f := range flags {
				cell, ok := rows[f.name]
				if !ok {
					missing = append(missing, "--"+f.name)
					continue
				}
				if problem := checkDefault(f, cell); problem != "" {
					t.Errorf("%s, section `%s`, row `--%s`: %s", docFile, c.title(), f.name, problem)
				}
			}
			if len(missing) > 0 {
				t.Errorf("%s, section `%s`, has no row for %s (give each flag a row of its own in the section's table: | `--name` | default | meaning |)",
					docFile, c.title(), strings.Join(missing, ", "))
			}
			var stale []string
			for f := range rows {
				if !slices.ContainsFunc(flags, func(h helpFlag) bool { return h.name == f }) {
					stale = append(stale, "--"+f)
				}
			}
			slices.Sort(stale)
			if len(stale) > 0 {
				t.Errorf("%s, section `%s`, documents %s, which `%s --help` does not list",
					docFile, c.title(), strings.Join(stale, ", "), c.title())
			}
		})
	}
}

// concreteDefault is how a row writes a fixed default: one backquoted
// value, optionally followed by a note in parentheses ("`2160h` (90
// days)"). Anything else (none, required, "from `--state.dir`", a
// computed "`<data.dir>/secrets.key`") describes a default the help cannot
// show as a value.
var concreteDefault = regexp.MustCompile("^`([^`]*)`(?: \\(.*\\))?$")

// checkDefault compares a flag's documented default (the row's second
// cell) with the one its help shows, and says what is wrong, or "".
func checkDefault(f helpFlag, cell string) string {
	if !f.shown {
		return "" // kingpin's booleans: the help shows no default to compare with.
	}
	m := concreteDefault.FindStringSubmatch(cell)
	switch {
	case f.def != "" && m == nil:
		return fmt.Sprintf("the default is written %q, but --help shows %q (write it as `%s`)", cell, f.def, f.def)
	case f.def != "" && !sameDefault(m[1], f.def):
		return fmt.Sprintf("the documented default `%s` is not the %q --help shows", m[1], f.def)
	case f.def == "" && m != nil && !strings.Contains(m[1], "<") && !slices.Contains([]string{"", "0", "false"}, m[1]):
		return fmt.Sprintf("the documented default `%s` is not in --help, which shows none", m[1])
	}
	return ""
}

// sameDefault reports whether a documented default and the help's are the
// same value: durations compare by length ("24h" is kingpin's "24h0m0s").
func sameDefault(doc, help string) bool {
	if doc == help {
		return true
	}
	d, err1 := time.ParseDuration(doc)
	h, err2 := time.ParseDuration(help)
	return err1 == nil && err2 == nil && d == h
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

// TestConfigurationDocumentsRuleCatalogue: the alert rule catalogue's table
// has a row per rule naming its alerts and, for a rule with a threshold,
// its unit and range as the code enforces them.
func TestConfigurationDocumentsRuleCatalogue(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(moduleRoot(t), "CONFIGURATION.md"))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if m := regexp.MustCompile("^\\| `([a-zA-Z]+)` \\| ").FindStringSubmatch(line); m != nil {
			rows[m[1]] = line
		}
	}
	for _, e := range rules.Catalogue {
		row, ok := rows[e.ID]
		if !ok {
			t.Errorf("CONFIGURATION.md has no row for alert rule %s", e.ID)
			continue
		}
		want := slices.Clone(e.Alerts)
		if th := e.Threshold; th != nil {
			want = append(want, fmt.Sprintf("%s, %s to %s, default %s", th.Unit, num(th.Min), num(th.Max), num(th.Default)))
		}
		for _, w := range want {
			if !strings.Contains(row, w) {
				t.Errorf("the row of alert rule %s lacks %q: %s", e.ID, w, row)
			}
		}
	}
}

// TestConfigurationDocumentsSilencesAndStorm: the bounds of a silence and
// of the storm threshold are written as the code enforces them.
func TestConfigurationDocumentsSilencesAndStorm(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(moduleRoot(t), "CONFIGURATION.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, sec, _ := strings.Cut(string(b), "### Silences and the storm guard")
	sec, _, _ = strings.Cut(sec, "\n### ")
	for _, w := range []string{
		fmt.Sprintf("`%s` to `%s`", model.Duration(alerts.MinSilenceDuration), model.Duration(alerts.MaxSilenceDuration)),
		fmt.Sprintf("`comment` 1 to %d", alerts.MaxSilenceComment),
		fmt.Sprintf("at most %d unexpired silences", alerts.MaxActiveSilences),
		fmt.Sprintf("at most %d more labels", alerts.MaxSilenceLabels),
		fmt.Sprintf("`%d` to `%d`, default `%d`", alerting.MinStormThreshold, alerting.MaxStormThreshold, alerting.DefaultStormThreshold),
		alerts.CodeSilenceLimit, alerting.AlertStorm, "ecp_alerts_storms_total",
	} {
		if !strings.Contains(sec, w) {
			t.Errorf("CONFIGURATION.md's section on silences and the storm guard lacks %q", w)
		}
	}
}

// TestConfigurationDocumentsNotificationChannels: the bounds, refused
// header names and placeholders of a project's channels are written as the
// code enforces them.
func TestConfigurationDocumentsNotificationChannels(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(moduleRoot(t), "CONFIGURATION.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, sec, _ := strings.Cut(string(b), "### Notification channels")
	sec, _, _ = strings.Cut(sec, "\n### ")
	sec = strings.Join(strings.Fields(sec), " ")
	want := []string{
		fmt.Sprintf("at most %d recipients", alerting.MaxEmails), fmt.Sprintf("at most %d webhooks", alerting.MaxWebhooks),
		fmt.Sprintf("at most %d, names HTTP tokens of at most %d bytes, values at most %d bytes", alerting.MaxHeaders, alerting.MaxHeaderName, alerting.MaxHeaderValue),
		fmt.Sprintf("at most %d bytes", alerting.MaxTemplate), strings.Join(alerting.RefusedHeaderNames(), ", "),
		"criticalOnly", "ecp_alerts_relay_total",
	}
	for _, p := range alerting.Placeholders {
		want = append(want, "`{{"+p+"}}`")
	}
	for _, w := range want {
		if !strings.Contains(sec, w) {
			t.Errorf("CONFIGURATION.md's section on notification channels lacks %q", w)
		}
	}
}

func num(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

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
	// kingpin (ecp, agent-exporter, emqx-sim): "  -h, --[no-]help", "      --web.listen-address=\"…\"",
	// "      --licence.total-connections=10000", "      --smtp.from=SMTP.FROM".
	kingpinFlag = regexp.MustCompile(`^(?:  -\S, |      )--(\[no-\])?([A-Za-z0-9][A-Za-z0-9._-]*)(?:=("(?:[^"\\]|\\.)*"|\S+))?`)
	// Go's flag package (demo): "  -dir string".
	goFlag = regexp.MustCompile(`^  -([A-Za-z0-9][A-Za-z0-9._-]*)(?:\s|$)`)
	// The end of a Go flag's usage: " (default \"info\")", " (default 15s)".
	goDefault = regexp.MustCompile(` \(default (.*)\)$`)
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

// helpFlag is one flag as a command's help lists it.
type helpFlag struct {
	name string
	// def is the default the help shows, "" when it shows none (a Go
	// flag's zero value, a kingpin flag without a default).
	def string
	// shown is false where the help never shows a default: kingpin's
	// booleans ("--[no-]smtp.require-tls").
	shown bool
}

// helpFlags runs the command's help and returns the flags it lists,
// without help itself.
func helpFlags(t *testing.T, bin string, c command) []helpFlag {
	t.Helper()
	help := "-h"
	if c.bin == "ecp" {
		help = "--help"
	}
	return parseHelp(run(t, bin, c.bin, append(slices.Clone(c.args), help)...))
}

// parseHelp reads the flags and their defaults from kingpin's help or
// from Go's flag.PrintDefaults.
func parseHelp(out string) []helpFlag {
	var flags []helpFlag
	var usage []string // the current Go flag's usage lines
	endUsage := func() {
		if len(flags) > 0 && len(usage) > 0 {
			if m := goDefault.FindStringSubmatch(strings.Join(usage, " ")); m != nil {
				flags[len(flags)-1].def = unquote(m[1])
			}
		}
		usage = nil
	}
	for _, line := range lines(out) {
		if m := kingpinFlag.FindStringSubmatch(line); m != nil {
			f := helpFlag{name: m[2], shown: m[1] == ""}
			// kingpin writes a default as its placeholder, quoted for a
			// string; without one the placeholder is the name in capitals.
			if v := m[3]; v != "" && v != strings.ToUpper(f.name) {
				f.def = unquote(v)
			}
			flags = appendFlag(flags, f)
			continue
		}
		if m := goFlag.FindStringSubmatch(line); m != nil {
			endUsage()
			flags = appendFlag(flags, helpFlag{name: m[1], shown: true})
			continue
		}
		if strings.HasPrefix(line, "    \t") {
			usage = append(usage, strings.TrimPrefix(line, "    \t"))
		}
	}
	endUsage()
	return flags
}

func appendFlag(flags []helpFlag, f helpFlag) []helpFlag {
	if f.name == "help" || f.name == "h" || slices.ContainsFunc(flags, func(g helpFlag) bool { return g.name == f.name }) {
		return flags
	}
	return append(flags, f)
}

func unquote(v string) string {
	if s, err := strconv.Unquote(v); err == nil {
		return s
	}
	return v
}

func lines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		out = append(out, sc.Text())
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

// tableRows are the flags a section documents in the first column of its
// tables, each with the row's second cell (the default).
func tableRows(section string) map[string]string {
	out := map[string]string{}
	for _, l := range lines(section) {
		m := tableFlag.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		if cells := tableCells(l); len(cells) > 1 {
			out[m[1]] = cells[1]
		} else {
			out[m[1]] = ""
		}
	}
	return out
}

// tableCells splits a Markdown table row at its unescaped pipes.
func tableCells(row string) []string {
	var cells []string
	var b strings.Builder
	row = strings.TrimSpace(row)
	row = strings.TrimPrefix(row, "|")
	for i := 0; i < len(row); i++ {
		switch {
		case row[i] == '\\' && i+1 < len(row) && row[i+1] == '|':
			b.WriteByte('|')
			i++
		case row[i] == '|':
			cells = append(cells, strings.TrimSpace(b.String()))
			b.Reset()
		default:
			b.WriteByte(row[i])
		}
	}
	if rest := strings.TrimSpace(b.String()); rest != "" {
		cells = append(cells, rest)
	}
	return cells
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
	kingpin := `usage: ecp serve [<flags>]

Flags:
  -h, --[no-]help                Show context-sensitive help (also try
                                 --help-long and --help-man).
      --web.listen-address="127.0.0.1:8080"  
                                 Address the HTTP server listens on.
      --config.file=CONFIG.FILE  YAML configuration file
      --licence.total-connections=10000  
      --registration.token-ttl=24h0m0s  
      --[no-]smtp.require-tls    Insist on STARTTLS.
      --log.level="info"         Only log messages with this severity or above:
`
	goflag := "Usage of agent-exporter run:\n" +
		"  -collect.interval duration\n    \tHow often EMQX is polled. (default 15s)\n" +
		"  -config.file string\n    \tOptional YAML configuration file.\n" +
		"  -force\n    \tforget the credential\n" +
		"  -log.file string\n    \tLog file; \"-\" logs to standard error.\n    \tSecond line. (default \"/opt/emqx/log/agent.log\")\n" +
		"  -agent.url string\n    \tURL of the control API (default: read from --state.dir).\n"
	for _, tc := range []struct {
		name, help string
		want       []helpFlag
	}{
		{"kingpin", kingpin, []helpFlag{
			{"web.listen-address", "127.0.0.1:8080", true},
			{"config.file", "", true},
			{"licence.total-connections", "10000", true},
			{"registration.token-ttl", "24h0m0s", true},
			{"smtp.require-tls", "", false},
			{"log.level", "info", true},
		}},
		{"flag", goflag, []helpFlag{
			{"collect.interval", "15s", true},
			{"config.file", "", true},
			{"force", "", true},
			{"log.file", "/opt/emqx/log/agent.log", true},
			{"agent.url", "", true},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseHelp(tc.help); !slices.Equal(got, tc.want) {
				t.Errorf("parseHelp =\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}

func TestCheckDefault(t *testing.T) {
	for _, tc := range []struct {
		flag helpFlag
		cell string
		ok   bool
	}{
		{helpFlag{"a", "127.0.0.1:8080", true}, "`127.0.0.1:8080`", true},
		{helpFlag{"a", "2160h0m0s", true}, "`2160h` (90 days)", true},
		{helpFlag{"a", "2147483648", true}, "`2147483648` (2 GiB)", true},
		{helpFlag{"a", "30s", true}, "`1m`", false},
		{helpFlag{"a", "/var/lib/x", true}, "none", false},
		{helpFlag{"a", "5000", true}, "`500`", false},
		{helpFlag{"a", "", true}, "none", true},
		{helpFlag{"a", "", true}, "required", true},
		{helpFlag{"a", "", true}, "`false`", true},
		{helpFlag{"a", "", true}, "from `--state.dir`", true},
		{helpFlag{"a", "", true}, "`<data.dir>/secrets.key`", true},
		{helpFlag{"a", "", true}, "`./data`", false},
		{helpFlag{"a", "", false}, "`true`", true},
	} {
		t.Run(tc.cell, func(t *testing.T) {
			if problem := checkDefault(tc.flag, tc.cell); (problem == "") != tc.ok {
				t.Errorf("checkDefault(%+v, %q) = %q, want ok=%v", tc.flag, tc.cell, problem, tc.ok)
			}
		})
	}
}

func TestTableRows(t *testing.T) {
	got := tableRows("| flag | default | meaning |\n| --- | --- | --- |\n| `--a` | `x` | one `\"a\"\\|\"b\"` |\n| `--[no-]b` | none | two |\nprose `--c`\n")
	want := map[string]string{"a": "`x`", "b": "none"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("tableRows = %v, want %v", got, want)
	}
}
