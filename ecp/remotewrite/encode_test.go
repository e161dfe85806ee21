package remotewrite

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	refsnappy "github.com/golang/snappy"
	"github.com/klauspost/compress/s2"
)

// TestSenderEncodesACallPushByPush: a call's pushes, compressed one by one
// into one snappy block, decode with the reference decoder (golang/snappy,
// which the Prometheus 2.42 of our tests decodes with) to the pushes
// joined in order, and the sender keeps about the compressed call, not a
// copy of the pushes uncompressed beside a buffer as large for the
// compressed form (two of 4 MiB in each of 4 senders before).
func TestSenderEncodesACallPushByPush(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var b []batch
	for i := range 40 {
		// About 100 KiB each, larger than snappy's 64 KiB blocks, with
		// repeats (label names) for copies and noise for literals.
		var raw bytes.Buffer
		for raw.Len() < 100<<10 {
			fmt.Fprintf(&raw, "emqx_rule_actions_failed{cluster=%q,rule=\"rule_%04d\"} %d\n", fmt.Sprint("c", i), rng.IntN(10000), rng.Uint64())
		}
		b = append(b, batch{raw: raw.Bytes(), cluster: fmt.Sprint("c", i)})
	}
	var s sender
	for _, call := range [][]batch{b, b[:1], b[3:7], b} {
		var joined []byte
		for _, p := range call {
			joined = append(joined, p.raw...)
		}
		body := s.encode(call)
		got, err := refsnappy.Decode(nil, body)
		if err != nil {
			t.Fatalf("a call of %d pushes does not decode: %v", len(call), err)
		}
		if !bytes.Equal(got, joined) {
			t.Fatalf("a call of %d pushes decodes to %d bytes that differ from the %d pushed", len(call), len(got), len(joined))
		}
	}
	body := s.encode(b)
	if held := cap(s.body); held > len(body)+len(body)/2+s2.MaxEncodedLen(100<<10+200) {
		t.Fatalf("the sender holds %d bytes after a call of %d bytes compressed", held, len(body))
	}
}
