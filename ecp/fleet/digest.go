package fleet

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// digestChunk bounds the clusters per digest key, keeping each value far
// below etcd's request size limit (1.5 MiB by default).
const digestChunk = 4000

// maxDigestBytes bounds a decompressed digest.
const maxDigestBytes = 16 << 20

// digest lists the clusters a replica served reports for since its
// previous digest, each with its latest snapshot. Every item is a complete
// observation, so chunks and digests can be applied in any order. At is
// when it was published (Unix milliseconds): the replica has told everything
// it heard before then, which the sweeper needs to know (covered).
type digest struct {
	At    int64        `json:"p,omitempty"`
	Items []digestItem `json:"i"`
}

type digestItem struct {
	ID           string `json:"c"`
	BindRev      int64  `json:"b"`
	At           int64  `json:"t"` // Unix milliseconds
	Conns        int    `json:"n,omitempty"`
	Live         int    `json:"l,omitempty"`
	Max          int    `json:"m,omitempty"`
	Nodes        int    `json:"o,omitempty"`
	NodesRunning int    `json:"r,omitempty"`
	Version      string `json:"v,omitempty"`
	AgentVersion string `json:"a,omitempty"`
}

// publishDigest writes the clusters this replica heard from since the
// previous digest under keys attached to its session lease. A lone replica
// publishes nothing: no one would read it. A replica that heard nothing
// still publishes, an empty digest, so the leader knows it has nothing to
// tell; and what a failed write could not tell goes into the next one.
func (f *Fleet) publishDigest(ctx context.Context) {
	f.mu.Lock()
	s := f.session
	if s == nil || len(f.peers) == 0 {
		f.mu.Unlock()
		return
	}
	heard := f.heard
	f.heard = nil
	var items []digestItem
	for _, e := range heard {
		e.heardLocal = false
		if !e.hasAgent || e.live.BindRev != e.bindRev {
			continue
		}
		l := e.live
		items = append(items, digestItem{ID: e.id, BindRev: l.BindRev, At: l.At.UnixMilli(), Conns: l.Connections,
			Live: l.LiveConnections, Max: l.MaxConnections, Nodes: l.Nodes, NodesRunning: l.NodesRunning,
			Version: l.Version, AgentVersion: l.AgentVersion})
	}
	prevChunks := f.digestChunks
	at := f.now().UnixMilli()
	f.mu.Unlock()
	chunks := 0
	for start := 0; start == 0 || start < len(items); start += digestChunk {
		val, err := encodeDigest(digest{At: at, Items: items[start:min(start+digestChunk, len(items))]})
		if err != nil {
			f.logger.Error("could not encode digest", "err", err)
			return
		}
		cctx, cancel := f.etcdCtx(ctx)
		_, err = f.cli.Put(cctx, f.digestKey(chunks), val, clientv3.WithLease(s.Lease()))
		cancel()
		if err != nil {
			f.logger.Warn("could not publish digest", "err", err)
			f.mu.Lock()
			f.publishingSince = time.Time{}
			for _, e := range heard {
				if !e.heardLocal {
					e.heardLocal = true
					f.heard = append(f.heard, e)
				}
			}
			f.mu.Unlock()
			return
		}
		f.metrics.etcdWrites.WithLabelValues("digest").Inc()
		chunks++
	}
	for n := chunks; n < prevChunks; n++ {
		cctx, cancel := f.etcdCtx(ctx)
		_, _ = f.cli.Delete(cctx, f.digestKey(n))
		cancel()
	}
	f.mu.Lock()
	f.digestChunks = chunks
	if f.publishingSince.IsZero() {
		f.publishingSince = time.UnixMilli(at)
	}
	f.mu.Unlock()
}

func (f *Fleet) digestKey(n int) string {
	return digestsPrefix + f.opts.ReplicaID + "/" + strconv.Itoa(n)
}

func encodeDigest(d digest) (string, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := json.NewEncoder(zw).Encode(d); err != nil {
		return "", fmt.Errorf("encode digest: %w", err)
	}
	if err := zw.Close(); err != nil {
		return "", fmt.Errorf("compress digest: %w", err)
	}
	return buf.String(), nil
}

func decodeDigest(b []byte) (digest, error) {
	var d digest
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return d, fmt.Errorf("decompress digest: %w", err)
	}
	if err := json.NewDecoder(io.LimitReader(zr, maxDigestBytes)).Decode(&d); err != nil {
		return d, fmt.Errorf("decode digest: %w", err)
	}
	return d, nil
}

// applyDigestLocked takes in another replica's digest: newer snapshots of
// the current bindings replace older ones, and each counts as hearing from
// the agent (at the report's time, never in the future).
func (f *Fleet) applyDigestLocked(key string, value []byte, now time.Time) {
	d, err := decodeDigest(value)
	if err != nil {
		f.logger.Warn("ignoring undecodable digest", "key", key, "err", err)
		return
	}
	if replica, _, ok := strings.Cut(strings.TrimPrefix(key, digestsPrefix), "/"); ok {
		// A digest of an older ecp carries no time; its arrival is the
		// best guess.
		at := now
		if d.At > 0 {
			at = time.UnixMilli(d.At)
		}
		if at.After(f.told[replica]) {
			f.told[replica] = at
		}
	}
	for _, it := range d.Items {
		e := f.entries[it.ID]
		if e == nil || !e.hasAgent || e.bindRev != it.BindRev {
			continue
		}
		at := time.UnixMilli(it.At)
		if at.After(now) {
			at = now
		}
		if !at.After(e.live.At) {
			continue
		}
		e.live = live{BindRev: it.BindRev, At: at, Connections: it.Conns, LiveConnections: it.Live, MaxConnections: it.Max,
			Nodes: it.Nodes, NodesRunning: it.NodesRunning, Version: it.Version, AgentVersion: it.AgentVersion}
		f.heardLocked(e, at)
	}
}

// coveredLocked is the time up to which every other replica has told this
// one what it heard: the oldest of their latest digests, zero when one has
// published none yet; now when there is no other replica. A replica that
// has published nothing since this one's digests started to go through
// again, a silence window ago, is not waited for: etcd takes writes, so it
// is stuck (its session may outlive it), and waiting for it would leave
// every silent agent running.
func (f *Fleet) coveredLocked(now time.Time) time.Time {
	covered := now
	healthy := !f.publishingSince.IsZero() && now.Sub(f.publishingSince) > f.silentAfter
	for id := range f.peers {
		t := f.told[id]
		if healthy && t.Before(f.publishingSince) {
			continue
		}
		if t.Before(covered) {
			covered = t
		}
	}
	return covered
}
