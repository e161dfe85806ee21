package logstore

import (
	"crypto/sha256"
	"encoding/binary"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/ecpio/ecp/agentproto"
)

// Batch is one agent log batch with the tenant labels ecp stamped on it from
// the agent's credential.
type Batch struct {
	// Project and Cluster are ecp's ids, never taken from the agent's lines.
	Project string
	Cluster string
	// Node is the default node name for lines that carry none.
	Node string
	// BatchID is the agent's id for the batch, stable across retries; it
	// keys the duplicate window. Empty turns the window off for this batch.
	BatchID string
	Lines   []agentproto.LogEntry
}

// Document field names, shared by the writer, the index template and the
// queries.
const (
	fieldTime    = "@timestamp"
	fieldMessage = "message"
	fieldLevel   = "level"
	fieldProject = "project"
	fieldCluster = "cluster"
	fieldNode    = "node"
	fieldRaw     = "raw"
	fieldFile    = "file"
	fieldOffset  = "offset"
	fieldFields  = "fields"
	fieldID      = "log_id"
)

// document is one stored line.
type document struct {
	Time    string            `json:"@timestamp"`
	Message string            `json:"message"`
	Level   string            `json:"level,omitempty"`
	Project string            `json:"project"`
	Cluster string            `json:"cluster"`
	Node    string            `json:"node,omitempty"`
	Raw     string            `json:"raw"`
	File    string            `json:"file,omitempty"`
	Offset  int64             `json:"offset"`
	Fields  map[string]string `json:"fields,omitempty"`
	ID      string            `json:"log_id"`
}

// timeLayout keeps nanoseconds and a fixed width, so stored times sort as
// strings too; both stores parse it.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// newDocument stamps one entry. now replaces a missing line time (the agent
// could not parse one) so the line is still stored and findable, and a time
// whose UTC year is outside 1 to 9999 (a line of "0000-01-01T00:00:00+01:00"
// is in year -1): timeLayout would not be four-digit years there, and the
// index name and the stores' time parsing both need them.
func newDocument(b *Batch, e *agentproto.LogEntry, now time.Time) document {
	t := e.Time
	if y := t.UTC().Year(); t.IsZero() || y < 1 || y > 9999 {
		t = now
	}
	node := e.Node
	if node == "" {
		node = b.Node
	}
	return document{
		Time:    t.UTC().Format(timeLayout),
		Message: truncate(e.Message),
		Level:   e.Level,
		Project: b.Project,
		Cluster: b.Cluster,
		Node:    node,
		Raw:     truncate(e.Raw),
		File:    e.File,
		Offset:  e.Offset,
		Fields:  truncateFields(e.Fields),
		ID:      LineID(b.Cluster, e),
	}
}

// MaxFieldBytes caps the message, the raw line and each parsed field of a
// stored line. VictoriaLogs silently skips a document line longer than its
// -insert.maxLineSizeBytes (256 KiB by default) while still acknowledging
// it, which would lose the whole line; a truncated line that says so is
// kept instead. EMQX lines are far shorter except when a payload is logged.
const MaxFieldBytes = 32 << 10

// truncate cuts s to MaxFieldBytes at a UTF-8 boundary and says how much
// was cut.
func truncate(s string) string {
	if len(s) <= MaxFieldBytes {
		return s
	}
	cut := MaxFieldBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…[truncated " + strconv.Itoa(len(s)-cut) + " bytes]"
}

func truncateFields(f map[string]string) map[string]string {
	for _, v := range f {
		if len(v) > MaxFieldBytes {
			out := make(map[string]string, len(f))
			for k2, v2 := range f {
				out[k2] = truncate(v2)
			}
			return out
		}
	}
	return f
}

// LineID is the deterministic id of a line: the same line of the same
// cluster always gets the same id, so a retried write overwrites itself in
// Elasticsearch. See the package doc for why time and text are part of it and
// why it is spelled in letters only.
func LineID(cluster string, e *agentproto.LogEntry) string {
	h := sha256.New()
	var n [8]byte
	writeField := func(s string) {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	writeField(cluster)
	writeField(e.File)
	binary.BigEndian.PutUint64(n[:], uint64(e.Offset))
	h.Write(n[:])
	binary.BigEndian.PutUint64(n[:], uint64(e.Time.UnixNano()))
	h.Write(n[:])
	writeField(e.Raw)
	sum := h.Sum(nil)[:16]
	id := make([]byte, 0, 2*len(sum))
	for _, c := range sum {
		id = append(id, 'a'+c>>4, 'a'+c&0x0f)
	}
	return string(id)
}

// indexName is the daily Elasticsearch index of a document time.
func indexName(prefix, docTime string) string {
	// docTime is timeLayout in UTC: "YYYY-MM-DD…"
	return prefix + "-" + docTime[0:4] + "." + docTime[5:7] + "." + docTime[8:10]
}

// bulkAction is the action line before each document (appendBulk writes
// it by hand; the type documents its shape and tests decode with it).
type bulkAction struct {
	Index bulkActionMeta `json:"index"`
}

type bulkActionMeta struct {
	Index string `json:"_index"`
	ID    string `json:"_id"`
}

// appendBulk appends one action and document line (NDJSON) to buf.
func appendBulk(buf []byte, prefix string, d *document) ([]byte, error) {
	buf = append(buf, `{"index":{"_index":`...)
	buf = appendJSONString(buf, indexName(prefix, d.Time))
	buf = append(buf, `,"_id":`...)
	buf = appendJSONString(buf, d.ID)
	buf = append(buf, "}}\n"...)
	buf = appendDocument(buf, d)
	return append(buf, '\n'), nil
}
