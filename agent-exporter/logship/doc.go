// Package logship tails EMQX's log files and ships them to ecp, so that no
// line is lost and none is sent twice across restarts, rotation and outages.
//
// # Files and rotation
//
// EMQX writes its log with OTP disk_log in wrap mode: emqx.log.1 … .N, the
// active one being the newest modified, wrapping to .1 and overwriting it
// (emqx-api.md §8.1); in halt mode a single emqx.log. A file is known by
// its fingerprint, a hash of its first line, not by its name or inode:
// EMQX's lines start with a microsecond timestamp, so the fingerprint names
// one filling of one file. A rename keeps the fingerprint (and the offset);
// a wrap-around or truncation that rewrites the file gives a new one (and
// offset 0). Files are read oldest modification first.
//
// # Offsets and exactly once
//
// The offsets live in the agent's state directory (OffsetsFile, mode 0600,
// replaced atomically). Before a batch is sent its byte ranges and id are
// written there as "in flight"; up to Options.MaxInFlight batches are in
// flight at once (reading, ecp and the store then work side by side), and
// the acknowledged offsets advance only over the leading batches ecp
// acknowledged, which ecp does only after its log store accepted them.
// After a crash (kill -9) every in-flight batch is read again and sent
// under its old id, which ecp's duplicate window recognises if an earlier
// attempt was stored. So a restart neither loses nor duplicates a line. The
// batch id is a hash of the cluster and the byte ranges with their file
// fingerprints: the same id always means the same lines.
//
// # Buffer and backpressure
//
// EMQX's own files are the disk buffer: the shipper reads from them only
// what it can send, and a batch waiting for ecp is held as its encoded
// JSON only (at most MaxInFlight × MaxBatchBytes of lines). While ecp or
// its store refuse (429/503 with Retry-After, or unreachable) each batch is
// retried with jittered exponential backoff, never sooner than Retry-After.
// If an outage lasts longer than EMQX takes to wrap through all its files,
// EMQX overwrites lines that were never shipped; the shipper counts their
// bytes (agent_exporter_log_bytes_lost_total) and says so in its log.
package logship
