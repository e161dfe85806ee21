package logship

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// OffsetsFile is the name of the shipper's state file in the agent's state
// directory.
const OffsetsFile = "logship-offsets.json"

// segment is a byte range of one log file, named by the file's fingerprint
// (the file may be renamed while the batch is in flight).
type segment struct {
	Fingerprint string `json:"fingerprint"`
	// Name is where the file was when the batch was built (for logs).
	Name string `json:"name"`
	From int64  `json:"from"`
	To   int64  `json:"to"`
}

// inFlight is a batch sent but not yet acknowledged. It is written before
// the batch goes out, so after a crash the same byte ranges are sent again
// under the same id and ecp recognises a batch it already stored.
type inFlight struct {
	ID       string    `json:"id"`
	Segments []segment `json:"segments"`
}

// offsets is the on-disk state: acknowledged offsets by file fingerprint.
type offsets struct {
	// Dir and Cluster say what the offsets are for; a different log
	// directory or registration starts over.
	Dir     string `json:"dir"`
	Cluster string `json:"cluster"`
	// Acked maps a file fingerprint to the offset up to which ecp has
	// acknowledged its lines.
	Acked map[string]int64 `json:"acked"`
	// InFlight are the batches sent and not yet acknowledged, in order.
	InFlight []inFlight `json:"inFlight,omitempty"`
}

// loadOffsets reads the state file; a missing file or one for another
// directory or cluster gives empty offsets.
func loadOffsets(path, dir, cluster string) (offsets, error) {
	fresh := offsets{Dir: dir, Cluster: cluster, Acked: map[string]int64{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fresh, nil
	}
	if err != nil {
		return fresh, fmt.Errorf("reading log offsets: %w", err)
	}
	var o offsets
	if err := json.Unmarshal(b, &o); err != nil {
		return fresh, fmt.Errorf("decoding log offsets %s: %w", path, err)
	}
	if o.Dir != dir || o.Cluster != cluster {
		return fresh, nil
	}
	if o.Acked == nil {
		o.Acked = map[string]int64{}
	}
	return o, nil
}

// save replaces the state file atomically (temporary file, fsync, rename)
// with mode 0600: a crash leaves the old or the new offsets, never half.
func (o *offsets) save(path string) error {
	b, err := json.Marshal(o)
	if err != nil {
		return fmt.Errorf("encoding log offsets: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing log offsets: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("securing log offsets: %w", err)
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return fmt.Errorf("writing log offsets: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("syncing log offsets: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("closing log offsets: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("replacing log offsets: %w", err)
	}
	return nil
}
