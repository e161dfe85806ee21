package emqx

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// ruleCounters add to one counter of a rule's metrics; the names are EMQX's
// in /prometheus/data_integration (emqx-api.md §7.2).
var ruleCounters = map[string]func(m *RuleMetrics, v float64){
	"emqx_rule_matched":         func(m *RuleMetrics, v float64) { m.Matched += v },
	"emqx_rule_passed":          func(m *RuleMetrics, v float64) { m.Passed += v },
	"emqx_rule_failed":          func(m *RuleMetrics, v float64) { m.Failed += v },
	"emqx_rule_actions_total":   func(m *RuleMetrics, v float64) { m.ActionsTotal += v },
	"emqx_rule_actions_success": func(m *RuleMetrics, v float64) { m.ActionsOK += v },
	"emqx_rule_actions_failed":  func(m *RuleMetrics, v float64) { m.ActionsFailed += v },
}

// ruleCounterPrefix starts every name of ruleCounters.
const ruleCounterPrefix = "emqx_rule_"

// authStatus are the series of /prometheus/auth (emqx-api.md §7.3) an
// AuthBackend is read from: for authenticators (label id) or authorization
// sources (label type), their enable or their status (1 connected).
var authStatus = map[string]struct {
	authz  bool
	label  string
	status bool
}{
	"emqx_authn_enable": {false, "id", false},
	"emqx_authn_status": {false, "id", true},
	"emqx_authz_enable": {true, "type", false},
	"emqx_authz_status": {true, "type", true},
}

// authStatusText reads the enable and status gauges out of /prometheus/auth
// in the Prometheus text format. A backend is enabled or connected only if
// every sample says so (1), as all_nodes_aggregated's logical AND does.
func authStatusText(body io.Reader) ([]AuthBackend, error) {
	type key struct {
		authz bool
		id    string
	}
	byKey := map[key]*AuthBackend{}
	var order []key
	err := scanSamples(body, "emqx_auth", func(name []byte) string { return authStatus[string(name)].label },
		func(name, id []byte, v float64) {
			kind := authStatus[string(name)]
			k := key{kind.authz, string(id)}
			b := byKey[k]
			if b == nil {
				if len(byKey) >= MaxAuthBackends {
					return
				}
				b = &AuthBackend{Authorization: kind.authz, ID: k.id, Enabled: true, Connected: true}
				byKey[k] = b
				order = append(order, k)
			}
			if kind.status {
				b.Connected = b.Connected && v == 1
			} else {
				b.Enabled = b.Enabled && v == 1
			}
		})
	if err != nil {
		return nil, err
	}
	out := make([]AuthBackend, len(order))
	for i, k := range order {
		out[i] = *byKey[k]
	}
	return out, nil
}

// ruleMetricsText reads the rule counters out of /prometheus/data_integration
// in the Prometheus text format, one pass over the lines without building
// metric families: of the thousands of series only six per rule matter.
// Samples of one rule on several nodes (a node label) are summed into the
// cluster-wide value, as all_nodes_aggregated would.
func ruleMetricsText(body io.Reader) (map[string]RuleMetrics, error) {
	// Counters by rule, in one slice rather than one allocation a rule.
	byID := map[string]int{}
	var counters []RuleMetrics
	err := scanSamples(body, ruleCounterPrefix, func(name []byte) string {
		if ruleCounters[string(name)] == nil { // no allocation: map lookup by converted bytes
			return ""
		}
		return "id"
	}, func(name, id []byte, v float64) {
		i, ok := byID[string(id)] // a lookup by converted bytes allocates nothing
		if !ok {
			i = len(counters)
			counters = append(counters, RuleMetrics{})
			byID[string(id)] = i
		}
		ruleCounters[string(name)](&counters[i], v)
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string]RuleMetrics, len(byID))
	for id, i := range byID {
		out[id] = counters[i]
	}
	return out, nil
}

// MaxCPUNodes bounds the nodes one /prometheus/stats reply may give a CPU
// usage for: an EMQX cluster has a few dozen nodes at most, and a reply
// with more is not EMQX's to trust.
const MaxCPUNodes = 1000

// nodeCPUText reads emqx_vm_cpu_use (percent) by node out of
// /prometheus/stats in the Prometheus text format (emqx-api.md §7.1),
// skipping the hundreds of other series.
func nodeCPUText(body io.Reader) (map[string]float64, error) {
	out := map[string]float64{}
	err := scanSamples(body, "emqx_vm_cpu_use", func(name []byte) string {
		if string(name) != "emqx_vm_cpu_use" {
			return ""
		}
		return "node"
	}, func(_, node []byte, v float64) {
		if len(out) < MaxCPUNodes {
			out[string(node)] = v
		}
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// scanSamples calls fn with each sample of body (the Prometheus text
// format) whose metric name starts with prefix and is one label accepts,
// the value of the label it names and the sample's value; label returns ""
// for a name to skip. Most of a reply is other series: the prefix rules
// them out before their name is even delimited. It reads body a line at a
// time (the caller bounds its size); the slices fn gets are valid only
// during the call.
func scanSamples(body io.Reader, prefix string, label func(name []byte) string, fn func(name, labelValue []byte, v float64)) error {
	r, ok := body.(*bufio.Reader)
	if !ok {
		r = bufio.NewReader(body)
	}
	var long []byte // a line longer than r's buffer
	for n := 1; ; n++ {
		line, rerr := r.ReadSlice('\n')
		if errors.Is(rerr, bufio.ErrBufferFull) {
			long = append(long[:0], line...)
			for errors.Is(rerr, bufio.ErrBufferFull) {
				line, rerr = r.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		end := errors.Is(rerr, io.EOF) // after a last line without a newline
		if rerr != nil && !end {
			return rerr
		}
		if err := scanLine(n, line, prefix, label, fn); err != nil {
			return err
		}
		if end {
			return nil
		}
	}
}

// scanLine is scanSamples' work on line n.
func scanLine(n int, line []byte, prefix string, label func(name []byte) string, fn func(name, labelValue []byte, v float64)) error {
	line = bytes.TrimSpace(line)
	if !bytes.HasPrefix(line, []byte(prefix)) {
		return nil // a comment, a blank line or another series
	}
	end := nameEnd(line)
	if end < 0 {
		return nil
	}
	l := label(line[:end])
	if l == "" {
		return nil
	}
	val, rest, err := labelValue(line[end:], l)
	if err != nil {
		return fmt.Errorf("line %d: %w", n, err)
	}
	v, err := sampleValue(rest)
	if err != nil {
		return fmt.Errorf("line %d: %w", n, err)
	}
	fn(line[:end], val, v)
	return nil
}

// nameEnd is where the metric name of a sample line ends (its label set or
// the blank before its value), -1 when nothing follows it. A loop rather
// than bytes.IndexAny, which was a third of a scan's time.
func nameEnd(line []byte) int {
	for i, c := range line {
		if c == '{' || c == ' ' || c == '\t' {
			return i
		}
	}
	return -1
}

// trimLeft drops the spaces, tabs and bytes equal to also that start s.
// A loop rather than bytes.TrimLeft, which builds its set of bytes on
// every call, for thousands of lines a collection.
func trimLeft(s []byte, also byte) []byte {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t' || s[0] == also) {
		s = s[1:]
	}
	return s
}

// labelValue reads a label set ("{...}" or nothing) and returns the value
// of the label named label and what follows the set.
func labelValue(s []byte, label string) ([]byte, []byte, error) {
	// Built only when needed: labelValue runs for thousands of lines a
	// collection.
	missing := func() error { return fmt.Errorf("a series without the %s label", label) }
	if len(s) == 0 || s[0] != '{' {
		return nil, nil, missing()
	}
	s = s[1:]
	var id []byte
	found := false
	for {
		s = trimLeft(s, ',')
		if len(s) == 0 {
			return nil, nil, errors.New("unterminated label set")
		}
		if s[0] == '}' {
			s = s[1:]
			break
		}
		eq := bytes.IndexByte(s, '=')
		if eq <= 0 || eq+1 >= len(s) || s[eq+1] != '"' {
			return nil, nil, errors.New("malformed label")
		}
		name := bytes.TrimSpace(s[:eq])
		val, rest, err := quoted(s[eq+2:])
		if err != nil {
			return nil, nil, err
		}
		if string(name) == label {
			id, found = val, true
		}
		s = rest
	}
	if !found || len(id) == 0 {
		return nil, nil, missing()
	}
	return id, s, nil
}

// quoted reads a label value up to its closing quote, undoing the text
// format's escapes (\\, \" and \n); without escapes it is a slice of s.
func quoted(s []byte) ([]byte, []byte, error) {
	var b []byte
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			if b == nil {
				return s[:i], s[i+1:], nil
			}
			return b, s[i+1:], nil
		case '\\':
			if i+1 >= len(s) {
				return nil, nil, errors.New("unterminated label value")
			}
			if b == nil {
				b = append([]byte{}, s[:i]...)
			}
			i++
			if s[i] == 'n' {
				b = append(b, '\n')
			} else {
				b = append(b, s[i])
			}
		default:
			if b != nil {
				b = append(b, s[i])
			}
		}
	}
	return nil, nil, errors.New("unterminated label value")
}

// sampleValue reads the value after a series (an optional timestamp
// follows it).
func sampleValue(s []byte) (float64, error) {
	s = trimLeft(s, ' ')
	for i, c := range s {
		if c == ' ' || c == '\t' {
			s = s[:i]
			break
		}
	}
	if len(s) == 0 {
		return 0, errors.New("a sample without a value")
	}
	v, err := strconv.ParseFloat(string(s), 64)
	if err != nil {
		return 0, fmt.Errorf("sample value %q: %w", s, err)
	}
	return v, nil
}
