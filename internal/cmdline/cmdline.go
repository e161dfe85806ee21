// Package cmdline is how the shipped binaries (ecp, agent-exporter,
// emqx-sim) read their flags: kingpin, as Prometheus and Alertmanager do,
// set up for a command that returns its exit code instead of exiting.
//
// Three things differ from a bare kingpin.New, each for a reason:
//   - kingpin calls os.Exit after --help; here Parse reports it instead, so
//     a command's run function returns and its tests can call it.
//   - kingpin reads the arguments of any "@file" argument from that file.
//     Nothing here asks for it, and a value such as a password that starts
//     with @ must not open a file, so it is off.
//   - agent-exporter and emqx-sim used Go's flag package before, whose
//     operators may have written "--count -1", "--password -x" or
//     "--force=false". Parse rewrites those forms into kingpin's
//     ("--count=-1", "--no-force") before parsing: a flag that takes a
//     value takes the next argument whatever it looks like, and a boolean
//     takes =true or =false. The one-dash "-state.dir" of Go's flag
//     package is refused, naming the two-dash spelling. ecp gets the same
//     rules, so the three binaries read a command line alike.
//
// ecp declares its subcommands on one App (kingpin's commands);
// agent-exporter builds one App per subcommand, named "agent-exporter
// <subcommand>", so each subcommand keeps its flags beside the code that
// uses them and dispatches on the first argument itself.
package cmdline

import (
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/alecthomas/kingpin/v2"
)

// App is a kingpin application whose Parse returns instead of exiting.
type App struct {
	*kingpin.Application
	// terminated is set by kingpin's --help (and --version) in place of
	// exiting.
	terminated bool
}

var noFileExpansion sync.Once

// New returns an App that writes help to stdout, takes -h for --help and
// never exits the process.
func New(name, help string, stdout, stderr io.Writer) *App {
	// kingpin keeps this switch in a package variable; every App sets it
	// before any parses.
	noFileExpansion.Do(func() { kingpin.EnableFileExpansion = false })
	a := &App{Application: kingpin.New(name, help)}
	a.UsageWriter(stdout)
	a.ErrorWriter(stderr)
	a.HelpFlag.Short('h')
	a.Terminate(func(int) { a.terminated = true })
	return a
}

// Parse parses args into the flags. helped is true when --help printed the
// usage (or --version the version): the caller exits 0 without running.
func (a *App) Parse(args []string) (command string, helped bool, err error) {
	args, err = a.normalize(args)
	if err != nil {
		return "", false, err
	}
	command, err = a.Application.Parse(args)
	if a.terminated {
		return command, true, nil
	}
	if err != nil {
		err = a.nameFlag(args, err)
	}
	return command, false, err
}

// nameFlag adds the flag's name to err where kingpin's error is the
// value's own ("time: invalid duration \"x\""), as Go's flag package did.
// It finds the flag by setting the values again; parsing failed, so
// nothing reads them.
func (a *App) nameFlag(args []string, err error) error {
	ctx, perr := a.ParseContext(args)
	if perr != nil || ctx == nil {
		return err // kingpin's parse errors name the flag already
	}
	for _, e := range ctx.Elements {
		f, ok := e.Clause.(*kingpin.FlagClause)
		if !ok || e.Value == nil {
			continue
		}
		if m := f.Model(); m.Value.Set(*e.Value) != nil {
			return fmt.Errorf("invalid value %q for --%s: %w", *e.Value, m.Name, err)
		}
	}
	return err
}

// normalize rewrites the Go flag package's spellings that kingpin reads
// differently: "--flag value" where value starts with - or @ becomes
// "--flag=value", "--bool=true" becomes "--bool" and "--bool=false"
// "--no-bool". A long flag with one dash ("-state.dir", which Go's flag
// package took) is an error that says to write two. Anything else passes
// through for kingpin to judge.
func (a *App) normalize(args []string) ([]string, error) {
	bools, values := a.flagKinds()
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			return append(out, args[i:]...), nil
		}
		if !strings.HasPrefix(arg, "--") {
			name, _, _ := strings.Cut(strings.TrimPrefix(arg, "-"), "=")
			if name != arg && len(name) > 1 && (bools[name] || values[name]) {
				return nil, fmt.Errorf("%s: flags take two dashes: -%s", arg, arg)
			}
			out = append(out, arg)
			continue
		}
		name, value, hasValue := strings.Cut(arg[2:], "=")
		switch {
		case bools[name] && hasValue && (value == "true" || value == "false"):
			if value == "false" {
				arg = "--no-" + name
			} else {
				arg = "--" + name
			}
		case values[name] && !hasValue && i+1 < len(args):
			i++
			arg = "--" + name + "=" + args[i]
		}
		out = append(out, arg)
	}
	return out, nil
}

// flagKinds returns the long names of the boolean flags and of the flags
// that take a value, over the application and all its commands.
func (a *App) flagKinds() (bools, values map[string]bool) {
	bools, values = map[string]bool{}, map[string]bool{}
	add := func(flags []*kingpin.FlagModel) {
		for _, f := range flags {
			if f.IsBoolFlag() {
				bools[f.Name] = true
			} else {
				values[f.Name] = true
			}
		}
	}
	m := a.Model()
	add(m.Flags)
	for _, c := range m.FlattenedCommands() {
		add(c.Flags)
	}
	return bools, values
}
