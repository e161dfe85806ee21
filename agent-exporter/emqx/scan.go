package emqx

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	jsonv2 "github.com/go-json-experiment/json"
)

// scanner reads EMQX's largest replies (/connectors, /actions, /sources and
// /rules: about 2 MB at 1,000 rules and 1,000 connectors) as they arrive and
// keeps the few members the agent uses. Each connector and action carries
// its whole configuration, which the agent never reads; decoding the lists
// into structs with the JSON v2 decoder spent most of its time matching and
// validating those members, 40 % of a tick's CPU. The scanner skips them by
// their structure only: strings to their closing quote, containers to their
// matching bracket, numbers and literals to the next delimiter. A value the
// agent keeps is read strictly: a string is decoded as the JSON v2 decoder
// (lenient) decodes it, escapes and invalid UTF-8 included, and a member of
// the wrong type fails the reply as before. Member names match as they did
// with the decoder's MatchCaseInsensitiveNames: exactly, else ignoring ASCII
// case, '_' and '-'; the last of duplicate members wins.
//
// Its window is the buffered reader's own buffer (Peek), so a string is
// copied only when it spans two reads.
type scanner struct {
	r *bufio.Reader
	w []byte // the reader's buffered bytes, w[i:] not read yet
	i int
	// err is the read error that ended the reply (io.EOF at its end).
	err error
	// str holds a string that spans windows.
	str []byte
	// open are the containers being skipped.
	open []byte
}

// maxDepth bounds the nesting of a skipped value, as the JSON v2 decoder
// does.
const maxDepth = 10000

func newScanner(r *bufio.Reader) *scanner { return &scanner{r: r} }

// more makes sure w[i:] is not empty; false at the end of the reply or on
// a read error (err).
func (s *scanner) more() bool { return s.i < len(s.w) || s.fill() }

// fill reads the next window once w is read.
func (s *scanner) fill() bool {
	if s.err != nil {
		return false
	}
	_, _ = s.r.Discard(s.i)
	s.w, s.i = nil, 0
	if _, err := s.r.Peek(1); err != nil {
		s.err = err
		return false
	}
	s.w, _ = s.r.Peek(s.r.Buffered())
	return true
}

// peek skips whitespace and returns the next byte; false at the end.
func (s *scanner) peek() (byte, bool) {
	for s.more() {
		switch c := s.w[s.i]; c {
		case ' ', '\t', '\r', '\n':
			s.i++
		default:
			return c, true
		}
	}
	return 0, false
}

// unexpected is the error of finding something else than want.
func (s *scanner) unexpected(want string) error {
	c, ok := s.peek()
	switch {
	case ok:
		return fmt.Errorf("invalid character %q, want %s", c, want)
	case errors.Is(s.err, io.EOF):
		return fmt.Errorf("want %s: %w", want, io.ErrUnexpectedEOF)
	default:
		return s.err
	}
}

// expect reads the byte c, after whitespace.
func (s *scanner) expect(c byte, want string) error {
	if got, ok := s.peek(); !ok || got != c {
		return s.unexpected(want)
	}
	s.i++
	return nil
}

// end reads the blanks after the top-level value to the end of the reply.
func (s *scanner) end() error {
	if c, ok := s.peek(); ok {
		return fmt.Errorf("invalid character %q after the top-level value", c)
	}
	if !errors.Is(s.err, io.EOF) {
		return s.err
	}
	return nil
}

// literal reads lit (true, false or null) whole.
func (s *scanner) literal(lit string) error {
	for k := 0; k < len(lit); k++ {
		if !s.more() || s.w[s.i] != lit[k] {
			return s.unexpected(lit)
		}
		s.i++
	}
	return nil
}

// rawString reads a string after its opening quote: its bytes as sent and
// whether it has escapes. They are valid until the next read.
func (s *scanner) rawString() ([]byte, bool, error) {
	s.str = s.str[:0]
	escaped, esc := false, false
	for s.more() {
		w := s.w[s.i:]
		end := -1
		// Most strings are short and plain: one pass finds the quote or
		// the first backslash.
		j := 0
		if !esc {
			for j < len(w) && w[j] != '"' && w[j] != '\\' {
				j++
			}
			if j < len(w) && w[j] == '"' {
				end = j
			}
		}
		if end < 0 && j < len(w) {
			escaped = true
			if end, esc = stringEnd(w[j:], esc); end >= 0 {
				end += j
			}
		}
		if end < 0 {
			s.str = append(s.str, w...)
			s.i = len(s.w)
			continue
		}
		s.i += end + 1
		if len(s.str) == 0 {
			return w[:end], escaped, nil
		}
		s.str = append(s.str, w[:end]...)
		return s.str, escaped, nil
	}
	return nil, false, s.unexpected("the end of a string")
}

// skipString reads a string after its opening quote and drops it.
func (s *scanner) skipString() error {
	esc := false
	for s.more() {
		w := s.w[s.i:]
		end := -1
		if !esc {
			j := 0
			for j < len(w) && w[j] != '"' && w[j] != '\\' {
				j++
			}
			if j < len(w) && w[j] == '"' {
				end = j
			} else if j < len(w) {
				if end, esc = stringEnd(w[j:], false); end >= 0 {
					end += j
				}
			}
		} else {
			end, esc = stringEnd(w, true)
		}
		if end >= 0 {
			s.i += end + 1
			return nil
		}
		s.i = len(s.w)
	}
	return s.unexpected("the end of a string")
}

// stringEnd finds the closing quote in w, esc saying whether w's first
// byte is escaped; it returns -1 and whether the byte after w is escaped
// when w has none.
func stringEnd(w []byte, esc bool) (int, bool) {
	for j, c := range w {
		switch {
		case esc:
			esc = false
		case c == '\\':
			esc = true
		case c == '"':
			return j, false
		}
	}
	return -1, esc
}

// decodeString turns a string's bytes as sent (rawString) into its value
// as the JSON v2 decoder would: the common plain string at once, any other
// (escapes, control characters, invalid UTF-8) through the decoder.
func decodeString(raw []byte, escaped bool) (string, error) {
	if !escaped {
		ascii := true
		plain := true
		for _, c := range raw {
			if c < 0x20 {
				plain = false
				break
			}
			if c >= utf8.RuneSelf {
				ascii = false
			}
		}
		if plain && (ascii || utf8.Valid(raw)) {
			return string(raw), nil
		}
	}
	q := make([]byte, 0, len(raw)+2)
	q = append(append(append(q, '"'), raw...), '"')
	var v string
	if err := jsonv2.Unmarshal(q, &v, lenient); err != nil {
		return "", err
	}
	return v, nil
}

// string reads a string value (null reads as "").
func (s *scanner) string() (string, error) {
	c, ok := s.peek()
	switch {
	case ok && c == 'n':
		return "", s.literal("null")
	case !ok || c != '"':
		return "", s.unexpected("a string")
	}
	s.i++
	raw, escaped, err := s.rawString()
	if err != nil {
		return "", err
	}
	return decodeString(raw, escaped)
}

// bool reads a boolean value (null reads as false).
func (s *scanner) bool() (bool, error) {
	c, _ := s.peek()
	switch c {
	case 't':
		return true, s.literal("true")
	case 'f':
		return false, s.literal("false")
	case 'n':
		return false, s.literal("null")
	}
	return false, s.unexpected("true or false")
}

// skip reads a value of any kind and drops it, checking its structure
// only: matched brackets, closed strings, at most maxDepth deep.
func (s *scanner) skip() error {
	s.open = s.open[:0]
	for {
		if !s.more() {
			return s.unexpected("a value")
		}
		c := s.w[s.i]
		switch c {
		case ' ', '\t', '\r', '\n', ',', ':':
			// Separators are checked only where the agent reads.
			if len(s.open) == 0 && (c == ',' || c == ':') {
				return s.unexpected("a value")
			}
			s.i++
			continue
		case '"':
			s.i++
			if err := s.skipString(); err != nil {
				return err
			}
		case '{', '[':
			if len(s.open) >= maxDepth {
				return fmt.Errorf("value nested more than %d deep", maxDepth)
			}
			s.i++
			s.open = append(s.open, c)
			continue
		case '}', ']':
			if len(s.open) == 0 || s.open[len(s.open)-1] != c-2 { // '{'+2 is '}', '['+2 is ']'
				return s.unexpected("a value")
			}
			s.i++
			s.open = s.open[:len(s.open)-1]
		default:
			if err := s.skipWord(); err != nil {
				return err
			}
		}
		if len(s.open) == 0 {
			return nil
		}
	}
}

// skipWord reads a number or a literal to the next delimiter.
func (s *scanner) skipWord() error {
	n := 0
	for s.more() {
		if !wordByte(s.w[s.i]) {
			break
		}
		s.i++
		n++
	}
	if n == 0 {
		return s.unexpected("a value")
	}
	return nil
}

// wordByte says whether c may be part of a number or a literal.
func wordByte(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'E'
}

// field is a member the agent reads: its name as EMQX sends it and folded
// (fold) for the names that differ in case, '_' or '-'.
type field struct{ name, folded string }

func fields(names ...string) []field {
	out := make([]field, len(names))
	for i, n := range names {
		out[i] = field{n, string(fold(nil, []byte(n)))}
	}
	return out
}

// fold lowercases ASCII letters and drops '_' and '-'.
func fold(dst, name []byte) []byte {
	for _, c := range name {
		switch {
		case c == '_' || c == '-':
		case 'A' <= c && c <= 'Z':
			dst = append(dst, c+'a'-'A')
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// lookup is the index of name in fs, or -1.
func lookup(fs []field, name []byte) int {
	for i, f := range fs {
		if string(name) == f.name {
			return i
		}
	}
	// Most names are none of fs: rule them out by their first letter
	// before folding them.
	first := byte(0)
	for _, c := range name {
		if c != '_' && c != '-' {
			first = c | 0x20 // ASCII lower case
			break
		}
	}
	match := false
	for _, f := range fs {
		match = match || f.folded[0] == first
	}
	if !match {
		return -1
	}
	var buf [32]byte
	folded := fold(buf[:0], name)
	for i, f := range fs {
		if string(folded) == f.folded {
			return i
		}
	}
	return -1
}

// object reads an object (null reads as none) and, for each member whose
// name is in fs, calls read with its index to read the value; the other
// members are skipped.
func (s *scanner) object(fs []field, read func(field int) error) error {
	c, ok := s.peek()
	switch {
	case ok && c == 'n':
		return s.literal("null")
	case !ok || c != '{':
		return s.unexpected("an object")
	}
	s.i++
	if c, ok := s.peek(); ok && c == '}' {
		s.i++
		return nil
	}
	for {
		if err := s.expect('"', "a member name"); err != nil {
			return err
		}
		raw, escaped, err := s.rawString()
		if err != nil {
			return err
		}
		if escaped {
			name, err := decodeString(raw, true)
			if err != nil {
				return err
			}
			raw = []byte(name)
		}
		f := lookup(fs, raw)
		if err := s.expect(':', "':' after a member name"); err != nil {
			return err
		}
		if f < 0 {
			err = s.skip()
		} else {
			err = read(f)
		}
		if err != nil {
			return err
		}
		c, ok := s.peek()
		if ok && c == ',' {
			s.i++
			continue
		}
		if ok && c == '}' {
			s.i++
			return nil
		}
		return s.unexpected("',' or '}' after a member")
	}
}

// into returns an object's read function that stores the value of member i
// of its fields in dst[i], a *string or a *bool: the fields and dst are
// listed in the same order.
func (s *scanner) into(dst ...any) func(field int) error {
	return func(f int) (err error) {
		switch p := dst[f].(type) {
		case *string:
			*p, err = s.string()
		case *bool:
			*p, err = s.bool()
		default:
			panic(fmt.Sprintf("scanner.into: %T is no string or bool", p))
		}
		return err
	}
}

// array reads an array (null reads as none), calling elem to read each
// element.
func (s *scanner) array(elem func() error) error {
	c, ok := s.peek()
	switch {
	case ok && c == 'n':
		return s.literal("null")
	case !ok || c != '[':
		return s.unexpected("an array")
	}
	s.i++
	if c, ok := s.peek(); ok && c == ']' {
		s.i++
		return nil
	}
	for {
		if err := elem(); err != nil {
			return err
		}
		c, ok := s.peek()
		if ok && c == ',' {
			s.i++
			continue
		}
		if ok && c == ']' {
			s.i++
			return nil
		}
		return s.unexpected("',' or ']' after an element")
	}
}

// resourceFields are the members of a connector, action or source kept.
var resourceFields = fields("type", "name", "enable", "status", "status_reason")

// scanResources reads a list of connectors, actions or sources into out.
func scanResources(r *bufio.Reader, out *[]Resource) error {
	s := newScanner(r)
	var res Resource
	read := s.into(&res.Type, &res.Name, &res.Enable, &res.Status, &res.StatusReason)
	err := s.array(func() error {
		res = Resource{}
		err := s.object(resourceFields, read)
		*out = append(*out, res)
		return err
	})
	if err != nil {
		return err
	}
	return s.end()
}

// Members of a page of rules, of its meta, and of a rule kept.
var (
	pageFields = fields("data", "meta")
	metaFields = fields("hasnext")
	ruleFields = fields("id", "name", "enable", "description")
)

// scanRules reads a page of rules into out: each rule carries its SQL and
// actions, of which the agent keeps nothing.
func scanRules(r *bufio.Reader, out *page[Rule]) error {
	s := newScanner(r)
	var rule Rule
	read := s.into(&rule.ID, &rule.Name, &rule.Enable, &rule.Description)
	elem := func() error {
		rule = Rule{}
		err := s.object(ruleFields, read)
		out.Data = append(out.Data, rule)
		return err
	}
	err := s.object(pageFields, func(f int) error {
		if f == 0 {
			out.Data = out.Data[:0] // the last of duplicate members wins
			return s.array(elem)
		}
		return s.object(metaFields, func(int) (err error) {
			out.Meta.HasNext, err = s.bool()
			return err
		})
	})
	if err != nil {
		return err
	}
	return s.end()
}
