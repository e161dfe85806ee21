package remotewrite

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"

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
//
// It rewrites the protobuf encoding in place of decoding it into Go
// structs: labels are compared as bytes and every other field (samples,
// exemplars, histograms, metadata) is copied unparsed, so the cost is a
// few allocations per request instead of several per label.
func Stamp(compressed []byte, project, cluster string, maxDecoded int) ([]byte, int, error) {
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
	out, samples, err := sc.stamp(raw, project, cluster)
	if err != nil {
		return nil, 0, fmt.Errorf("body is not a remote-write 1.0 WriteRequest: %w", err)
	}
	return snappy.Encode(nil, out), samples, nil
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// scratch holds the buffers of one Stamp call, reused across calls.
type scratch struct {
	raw    []byte
	out    []byte
	series []byte
	rest   []byte
	labels []labelRef
}

// labelRef is one label of a series: its name and its whole encoded
// Label message.
type labelRef struct {
	name []byte
	msg  []byte
}

var (
	nameProject = []byte(LabelProject)
	nameCluster = []byte(LabelCluster)
)

var errMalformed = errors.New("malformed protobuf")

func (sc *scratch) stamp(b []byte, project, cluster string) ([]byte, int, error) {
	clusterLabel := encodeLabel(nil, LabelCluster, cluster)
	projectLabel := encodeLabel(nil, LabelProject, project)
	out := sc.out[:0]
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
			series, count, err := sc.stampSeries(v, clusterLabel, projectLabel)
			if err != nil {
				return nil, 0, err
			}
			samples += count
			out = protowire.AppendTag(out, fieldWriteRequestTimeseries, protowire.BytesType)
			out = protowire.AppendBytes(out, series)
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
	sc.out = out
	return out, samples, nil
}

// stampSeries rewrites one TimeSeries message: its labels without project
// and cluster, the two stamped ones inserted in name order, then every
// other field unchanged. It returns the message (valid until the next
// call) and its number of samples and histograms.
func (sc *scratch) stampSeries(b, clusterLabel, projectLabel []byte) ([]byte, int, error) {
	labels := sc.labels[:0]
	rest := sc.rest[:0]
	samples := 0
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, 0, errMalformed
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return nil, 0, errMalformed
		}
		switch {
		case num == fieldTimeSeriesLabels && typ == protowire.BytesType:
			msg, _ := protowire.ConsumeBytes(b[n:])
			name, err := labelName(msg)
			if err != nil {
				return nil, 0, err
			}
			if !bytes.Equal(name, nameProject) && !bytes.Equal(name, nameCluster) {
				labels = append(labels, labelRef{name: name, msg: msg})
			}
		default:
			if num == fieldTimeSeriesSamples || num == fieldTimeSeriesHistograms {
				samples++
			}
			rest = append(rest, b[:n+m]...)
		}
		b = b[n+m:]
	}
	if !slices.IsSortedFunc(labels, compareRef) {
		slices.SortStableFunc(labels, compareRef)
	}
	out := sc.series[:0]
	stamped := [2]struct {
		name []byte
		msg  []byte
	}{{nameCluster, clusterLabel}, {nameProject, projectLabel}}
	next := 0
	for _, l := range labels {
		for next < len(stamped) && bytes.Compare(stamped[next].name, l.name) < 0 {
			out = appendLabel(out, stamped[next].msg)
			next++
		}
		out = appendLabel(out, l.msg)
	}
	for ; next < len(stamped); next++ {
		out = appendLabel(out, stamped[next].msg)
	}
	out = append(out, rest...)
	sc.labels, sc.rest, sc.series = labels[:0], rest[:0], out
	return out, samples, nil
}

func compareRef(a, b labelRef) int { return bytes.Compare(a.name, b.name) }

func appendLabel(b, msg []byte) []byte {
	b = protowire.AppendTag(b, fieldTimeSeriesLabels, protowire.BytesType)
	return protowire.AppendBytes(b, msg)
}

// labelName returns the name field of an encoded Label.
func labelName(msg []byte) ([]byte, error) {
	var name []byte
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return nil, errMalformed
		}
		m := protowire.ConsumeFieldValue(num, typ, msg[n:])
		if m < 0 {
			return nil, errMalformed
		}
		if num == fieldLabelName && typ == protowire.BytesType {
			name, _ = protowire.ConsumeBytes(msg[n:])
		}
		msg = msg[n+m:]
	}
	return name, nil
}

// encodeLabel appends an encoded Label message.
func encodeLabel(b []byte, name, value string) []byte {
	b = protowire.AppendTag(b, fieldLabelName, protowire.BytesType)
	b = protowire.AppendString(b, name)
	b = protowire.AppendTag(b, fieldLabelValue, protowire.BytesType)
	return protowire.AppendString(b, value)
}
