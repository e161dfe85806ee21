package remotewrite

import (
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/prompb"

	"github.com/ecpio/ecp/agent-exporter/selection"
)

// Defaults of the selection of pushed series (package selection).
const (
	DefaultMaxSeries    = selection.DefaultMaxSeries
	DefaultRecoveryHold = selection.DefaultRecoveryHold
)

// ref is one metric of the gathered families: family and metric index.
type ref = selection.Ref

// Selector encodes one collection's push under the series cap: package
// selection chooses the series, this flattens and encodes the kept ones.
// It also marks the series that vanished since the previous push
// (staleness).
type Selector struct {
	sel   *selection.Selector
	stale staleness
	buf   pushBuf
}

// NewSelector returns a Selector pushing at most maxSeries series (0: no
// cap) and holding recovered objects for hold (0: DefaultRecoveryHold).
func NewSelector(maxSeries int, hold time.Duration) *Selector {
	return &Selector{sel: selection.New(maxSeries, hold)}
}

// Push is one collection's request, ready to send.
type Push struct {
	// Body is the snappy-compressed write request.
	Body []byte
	// Series and Samples are in the request (a failing rule's counter may
	// carry two samples); Capped series were left out by the cap.
	Series, Samples, Capped int
}

// Encode turns one collection's metric families into the request to push
// (as the package's Encode does), keeping the series the cap allows.
func (s *Selector) Encode(mfs []*dto.MetricFamily, at time.Time) (Push, error) {
	series, capped := s.choose(mfs, at)
	body, samples, err := s.buf.marshal(series)
	if err != nil {
		return Push{}, err
	}
	return Push{Body: body, Series: len(series), Samples: samples, Capped: capped}, nil
}

// choose returns the series to push out of one collection at at and how
// many it left out. The series are valid until the next choose.
func (s *Selector) choose(mfs []*dto.MetricFamily, at time.Time) ([]prompb.TimeSeries, int) {
	c := s.sel.Choose(mfs, at)
	return s.stale.mark(mfs, c.Kept, flattenKept(mfs, at, c.Keep, c.Earlier, &s.buf), at.UnixMilli()), c.Capped
}

// reset forgets every object (selection.Selector.Reset) and every series
// pushed: a new registration starts afresh.
func (s *Selector) reset() {
	s.sel.Reset()
	s.stale = staleness{}
}
