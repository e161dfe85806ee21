package remotewrite

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/snappy"
	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of remote write 1.0 (prometheus/prompb types.proto and
// remote.proto) the gateway touches; every other field is copied as is.
const (
	fieldWriteRequestTimeseries = 1 // WriteRequest.timeseries
	fieldTimeSeriesLabels       = 1 // TimeSeries.labels
	fieldTimeSeriesSamples      = 2 // TimeSeries.samples
	fieldTimeSeriesHistograms   = 4 // TimeSeries.histograms
	fieldLabelName              = 1 // Label.name
	fieldLabelValue             = 2 // Label.value
)

// Stamp decodes a snappy-compressed remote-write 1.0 request, sets the
// project and cluster labels of every series (replacing any the agent
// sent), keeps each series' labels sorted by name as receivers expect, and
// returns the request compressed again with the number of samples in it.
// The gateway does the same in two halves: appendStamped in the agent's
// request, encode in the sender, once for a batch of requests.
//
// It rewrites the protobuf encoding in place of decoding it into Go
// structs: labels are compared as bytes and every other field (samples,
// exemplars, histograms, metadata) and every label the agent may keep is
// copied unparsed, so the cost is a few allocations per request instead of
// several per label.
func Stamp(compressed []byte, project, cluster string, maxDecoded int) ([]byte, int, error) {
	raw, samples, err := appendStamped(nil, compressed, project, cluster, maxDecoded)
	if err != nil {
		return nil, 0, err
	}
	return encode(nil, raw), samples, nil
}

// appendStamped appends the stamped request, uncompressed, to dst. The
// WriteRequests of several agents appended one after the other make one
// WriteRequest holding all their series (protobuf concatenates repeated
// fields), which is how the senders batch them.
func appendStamped(dst, compressed []byte, project, cluster string, maxDecoded int) ([]byte, int, error) {
	n, err := snappy.DecodedLen(compressed)
	if err != nil {
		return nil, 0, fmt.Errorf("body is not snappy-compressed (remote write 1.0 needs Content-Encoding: snappy): %w", err)
	}
	if n > maxDecoded {
		return nil, 0, fmt.Errorf("decompressed body would be %d bytes, over the %d allowed; send smaller batches", n, maxDecoded)
	}
	sc := scratchPool.Get().(*scratch)
	defer scratchPool.Put(sc)
	raw, err := snappy.Decode(sc.raw[:cap(sc.raw)], compressed)
	if err != nil {
		return nil, 0, fmt.Errorf("body is not snappy-compressed: %w", err)
	}
	sc.raw = raw
	// Grow dst once to what the stamped request can take at most, rather
	// than step by step as it is written: a new buffer (a pooled one being
	// too small, or none left after a garbage collection) then costs one
	// allocation of its size instead of a dozen adding up to twice or more.
	if series, ok := countSeries(raw); ok {
		dst = slices.Grow(dst, len(raw)+series*(labelSize(LabelProject, project)+labelSize(LabelCluster, cluster)+maxLengthGrowth))
	}
	out, samples, err := sc.stamp(dst, raw, project, cluster)
	if err != nil {
		return nil, 0, fmt.Errorf("body is not a remote-write 1.0 WriteRequest: %w", err)
	}
	return out, samples, nil
}

// maxLengthGrowth is how many bytes a TimeSeries' length prefix can grow
// by when labels are added: from one byte to the four a length under
// 256 MiB takes.
const maxLengthGrowth = 3

// countSeries counts the TimeSeries fields of a WriteRequest, reading only
// their tags and lengths; false if b is malformed (stamp says how).
func countSeries(b []byte) (int, bool) {
	n := 0
	for len(b) > 0 {
		num, typ, m := protowire.ConsumeTag(b)
		if m < 0 {
			return 0, false
		}
		l := protowire.ConsumeFieldValue(num, typ, b[m:])
		if l < 0 {
			return 0, false
		}
		if num == fieldWriteRequestTimeseries && typ == protowire.BytesType {
			n++
		}
		b = b[m+l:]
	}
	return n, true
}

// labelSize is the encoded size of the TimeSeries.labels field
// appendLabel appends.
func labelSize(name, value string) int {
	return protowire.SizeTag(fieldTimeSeriesLabels) + protowire.SizeBytes(
		protowire.SizeTag(fieldLabelName)+protowire.SizeBytes(len(name))+protowire.SizeTag(fieldLabelValue)+protowire.SizeBytes(len(value)))
}

// encode returns raw as a snappy block in dst's memory when it is large
// enough. It uses the fast encoder: the default one (s2's "better",
// behind klauspost's snappy.Encode) cost the gateway twice as much CPU
// for a body that only crosses to the backend.
func encode(dst, raw []byte) []byte {
	return s2.EncodeSnappy(dst[:cap(dst)], raw)
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// scratch holds the buffers of one Stamp call, reused across calls. It
// holds offsets rather than slices so that filling it costs no write
// barriers while the garbage collector runs.
type scratch struct {
	raw []byte
	// The two stamped Label fields, tag and length included.
	cluster, project []byte
	labels           []labelRef
	rest             []span
}

// labelRef is one label field of a series: where the whole field and its
// name are in the series message.
type labelRef struct {
	field, name span
}

// span is b[start:end] of the message being rewritten.
type span struct{ start, end int }

var (
	nameProject = []byte(LabelProject)
	nameCluster = []byte(LabelCluster)
)

var errMalformed = errors.New("malformed protobuf")

func (sc *scratch) stamp(out, b []byte, project, cluster string) ([]byte, int, error) {
	sc.cluster = appendLabel(sc.cluster[:0], LabelCluster, cluster)
	sc.project = appendLabel(sc.project[:0], LabelProject, project)
	samples := 0
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, 0, errMalformed
		}
		if num == fieldWriteRequestTimeseries && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b[n:])
			if m < 0 {
				return nil, 0, errMalformed
			}
			var count int
			var err error
			if out, count, err = sc.appendSeries(out, v); err != nil {
				return nil, 0, err
			}
			samples += count
			b = b[n+m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return nil, 0, errMalformed
		}
		out = append(out, b[:n+m]...)
		b = b[n+m:]
	}
	return out, samples, nil
}

// appendSeries appends one TimeSeries field to out: its labels without
// project and cluster, the two stamped ones inserted in name order, then
// every other field unchanged. It also returns the number of samples and
// histograms in the series.
func (sc *scratch) appendSeries(out, b []byte) ([]byte, int, error) {
	labels := sc.labels[:0]
	rest := sc.rest[:0]
	samples := 0
	size := len(sc.cluster) + len(sc.project)
	for off := 0; off < len(b); {
		num, typ, val, end := nextField(b, off)
		if end < 0 {
			return nil, 0, errMalformed
		}
		field := span{off, end}
		off = end
		if num == fieldTimeSeriesLabels && typ == protowire.BytesType {
			msg := b[val.start:val.end]
			name, err := labelName(msg)
			if err != nil {
				return nil, 0, err
			}
			if name.end-name.start == len(nameProject) && bytes.Equal(msg[name.start:name.end], nameProject) ||
				name.end-name.start == len(nameCluster) && bytes.Equal(msg[name.start:name.end], nameCluster) {
				continue
			}
			labels = append(labels, labelRef{field: field, name: span{val.start + name.start, val.start + name.end}})
			size += field.end - field.start
			continue
		}
		if num == fieldTimeSeriesSamples || num == fieldTimeSeriesHistograms {
			samples++
		}
		if k := len(rest) - 1; k >= 0 && rest[k].end == field.start {
			rest[k].end = field.end
		} else {
			rest = append(rest, field)
		}
		size += field.end - field.start
	}
	cmp := func(x, y labelRef) int { return bytes.Compare(b[x.name.start:x.name.end], b[y.name.start:y.name.end]) }
	if !slices.IsSortedFunc(labels, cmp) {
		slices.SortStableFunc(labels, cmp)
	}
	out = protowire.AppendTag(out, fieldWriteRequestTimeseries, protowire.BytesType)
	out = protowire.AppendVarint(out, uint64(size))
	stamped := [2]struct{ name, field []byte }{{nameCluster, sc.cluster}, {nameProject, sc.project}}
	next := 0
	for _, l := range labels {
		for next < len(stamped) && bytes.Compare(stamped[next].name, b[l.name.start:l.name.end]) < 0 {
			out = append(out, stamped[next].field...)
			next++
		}
		out = append(out, b[l.field.start:l.field.end]...)
	}
	for ; next < len(stamped); next++ {
		out = append(out, stamped[next].field...)
	}
	for _, r := range rest {
		out = append(out, b[r.start:r.end]...)
	}
	sc.labels, sc.rest = labels[:0], rest[:0]
	return out, samples, nil
}

// labelName returns where the name field of an encoded Label is (the last
// one, as protobuf decoders read it).
func labelName(msg []byte) (span, error) {
	var name span
	for off := 0; off < len(msg); {
		num, typ, val, end := nextField(msg, off)
		if end < 0 {
			return span{}, errMalformed
		}
		if num == fieldLabelName && typ == protowire.BytesType {
			name = val
		}
		off = end
	}
	return name, nil
}

// nextField reads the field at b[off:]: its number and type, where its
// value's bytes are when it is length-delimited, and where it ends (-1:
// malformed).
func nextField(b []byte, off int) (protowire.Number, protowire.Type, span, int) {
	// Labels and samples under 128 bytes have a one-byte tag and a
	// one-byte length: read those without the general decoder.
	if off+1 < len(b) && b[off] >= 1<<3 && b[off] < 0x80 && protowire.Type(b[off]&7) == protowire.BytesType && b[off+1] < 0x80 {
		end := off + 2 + int(b[off+1])
		if end > len(b) {
			return 0, 0, span{}, -1
		}
		return protowire.Number(b[off] >> 3), protowire.BytesType, span{off + 2, end}, end
	}
	num, typ, n := protowire.ConsumeTag(b[off:])
	if n < 0 {
		return 0, 0, span{}, -1
	}
	m := protowire.ConsumeFieldValue(num, typ, b[off+n:])
	if m < 0 {
		return 0, 0, span{}, -1
	}
	end := off + n + m
	var val span
	if typ == protowire.BytesType {
		v, _ := protowire.ConsumeBytes(b[off+n : end])
		val = span{end - len(v), end}
	}
	return num, typ, val, end
}

// appendLabel appends a TimeSeries.labels field holding name and value.
func appendLabel(b []byte, name, value string) []byte {
	b = protowire.AppendTag(b, fieldTimeSeriesLabels, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(protowire.SizeTag(fieldLabelName)+protowire.SizeBytes(len(name))+protowire.SizeTag(fieldLabelValue)+protowire.SizeBytes(len(value))))
	b = protowire.AppendTag(b, fieldLabelName, protowire.BytesType)
	b = protowire.AppendString(b, name)
	b = protowire.AppendTag(b, fieldLabelValue, protowire.BytesType)
	return protowire.AppendString(b, value)
}
