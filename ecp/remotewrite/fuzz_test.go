package remotewrite

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/klauspost/compress/snappy"
	"github.com/prometheus/prometheus/prompb"
)

// FuzzStamp feeds Stamp hostile remote-write bodies (the protobuf is
// fuzzed, then snappy-compressed, so the fuzzer explores the message and
// not the compression; raw=true sends the bytes uncompressed as a broken
// agent would). Properties:
//   - no panic, and the decompressed size limit holds;
//   - Stamp accepts every well-formed request Prometheus accepts, and
//     never turns a request Prometheus accepts into one it refuses;
//   - in any stamped request Prometheus accepts, every series carries
//     exactly one project and one cluster label, ours, with labels sorted
//     by name (no forged tenant label survives any encoding trick);
//   - the sample count is the number of samples and histograms sent;
//   - the output grows by at most the two stamped labels per series.
func FuzzStamp(f *testing.F) {
	seed := func(ts ...prompb.TimeSeries) []byte {
		b, err := (&prompb.WriteRequest{Timeseries: ts, Metadata: []prompb.MetricMetadata{{MetricFamilyName: "m", Help: "h"}}}).Marshal()
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	sample := []prompb.Sample{{Value: 1, Timestamp: 1000}}
	f.Add(seed(prompb.TimeSeries{Labels: labels("__name__", "up", "job", "emqx"), Samples: sample}), false, 32<<20)
	// Forgeries: the tenant labels sent, twice, unsorted, empty-named.
	f.Add(seed(prompb.TimeSeries{Labels: labels("project", "victim", "__name__", "up", "cluster", "victim-c", "project", "victim2"), Samples: sample},
		prompb.TimeSeries{Labels: labels("", "x", "zzz", "1"), Histograms: []prompb.Histogram{{Timestamp: 1}}}), false, 32<<20)
	f.Add(seed(prompb.TimeSeries{Labels: labels("a", "1"), Samples: sample, Exemplars: []prompb.Exemplar{{Labels: labels("project", "victim")}}}), false, 32<<20)
	// A label whose name field comes twice (the last one counts in
	// protobuf): name "x" then "project".
	f.Add([]byte{0x0a, 0x10, 0x0a, 0x0e, 0x0a, 0x01, 'x', 0x0a, 0x07, 'p', 'r', 'o', 'j', 'e', 'c', 't', 0x12, 0x00}, false, 32<<20)
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}, false, 32<<20)
	f.Add([]byte("not snappy"), true, 32<<20)
	f.Add(seed(prompb.TimeSeries{Labels: labels("__name__", "up"), Samples: sample}), false, 4)
	f.Fuzz(func(t *testing.T, body []byte, raw bool, maxDecoded int) {
		if maxDecoded < 0 {
			maxDecoded = -maxDecoded
		}
		compressed := body
		if !raw {
			compressed = snappy.Encode(nil, body)
		}
		const project, cluster = "p-ours", "c-ours"
		out, samples, err := Stamp(compressed, project, cluster, maxDecoded)
		var in prompb.WriteRequest
		inRaw, inErr := snappy.Decode(nil, compressed)
		if inErr == nil {
			inErr = in.Unmarshal(inRaw)
		}
		if err != nil {
			// Prometheus' decoder is laxer than Stamp (it skips a group
			// whose end tag names another field, testdata "C$", and keeps
			// it as an unknown field), so only the request as Prometheus
			// itself would encode what it understood must be accepted.
			if inErr != nil {
				return
			}
			dropUnknown(reflect.ValueOf(&in).Elem())
			canon, merr := in.Marshal()
			if merr != nil {
				t.Fatal(merr)
			}
			if len(canon) > maxDecoded {
				return
			}
			if _, _, err := Stamp(snappy.Encode(nil, canon), project, cluster, maxDecoded); err != nil {
				t.Fatalf("Stamp refused a well-formed request Prometheus accepts: %v", err)
			}
			return
		}
		if len(inRaw) > maxDecoded {
			t.Fatalf("Stamp accepted %d decompressed bytes with a limit of %d", len(inRaw), maxDecoded)
		}
		outRaw, err := snappy.Decode(nil, out)
		if err != nil {
			t.Fatalf("Stamp's output is not snappy: %v", err)
		}
		var got prompb.WriteRequest
		if err := got.Unmarshal(outRaw); err != nil {
			if inErr == nil {
				t.Fatalf("Stamp turned a request Prometheus accepts into one it refuses: %v", err)
			}
			return // Prometheus refuses it as it would have the input.
		}
		if inErr == nil && len(got.Timeseries) != len(in.Timeseries) {
			t.Fatalf("%d series in, %d out", len(in.Timeseries), len(got.Timeseries))
		}
		// Both stamped labels are at most this many bytes each, with tags.
		const perLabel = 2 + 1 + len(LabelProject) + 1 + len("p-ours") + 2
		if limit := len(inRaw) + len(got.Timeseries)*(2*perLabel+10); len(outRaw) > limit {
			t.Fatalf("output is %d bytes for %d in and %d series, over %d", len(outRaw), len(inRaw), len(got.Timeseries), limit)
		}
		want := 0
		for i, ts := range got.Timeseries {
			want += len(ts.Samples) + len(ts.Histograms)
			var p, c []string
			for _, l := range ts.Labels {
				switch l.Name {
				case LabelProject:
					p = append(p, l.Value)
				case LabelCluster:
					c = append(c, l.Value)
				}
			}
			if !slices.Equal(p, []string{project}) || !slices.Equal(c, []string{cluster}) {
				t.Fatalf("series %d has project labels %q and cluster labels %q, want exactly [%s] and [%s]: %v", i, p, c, project, cluster, ts.Labels)
			}
			if !slices.IsSortedFunc(ts.Labels, func(a, b prompb.Label) int { return strings.Compare(a.Name, b.Name) }) {
				t.Fatalf("series %d labels are not sorted by name: %v", i, ts.Labels)
			}
		}
		if samples != want {
			t.Fatalf("Stamp counted %d samples, the request holds %d", samples, want)
		}
	})
}

// dropUnknown clears the unknown fields gogo/protobuf keeps in every
// message of v (XXX_unrecognized), so Marshal gives only what was
// understood.
func dropUnknown(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			dropUnknown(v.Elem())
		}
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return
		}
		for i := range v.Len() {
			dropUnknown(v.Index(i))
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).Name == "XXX_unrecognized" {
				v.Field(i).SetBytes(nil)
				continue
			}
			if v.Type().Field(i).IsExported() {
				dropUnknown(v.Field(i))
			}
		}
	}
}
