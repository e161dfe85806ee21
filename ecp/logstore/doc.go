// Package logstore writes the EMQX log lines agents ship to ecp into the log
// receiver the system admin configured, and reads them back per project.
//
// Two receiver types share one code path for writing: Elasticsearch, through
// its bulk API, and VictoriaLogs, through its Elasticsearch-compatible bulk
// endpoint (/insert/elasticsearch/_bulk with _msg_field, _time_field and
// _stream_fields). Reading differs: the Elasticsearch query DSL with
// search_after paging against Elasticsearch, LogsQL against VictoriaLogs.
//
// # Documents
//
// Each line becomes one document: @timestamp (RFC 3339, nanoseconds, UTC),
// message, level, project, cluster, node, raw (the line as the agent read it),
// file, offset, fields (the parsed key/values, stored but not indexed in
// Elasticsearch, so an EMQX report key can never explode the index mapping)
// and log_id; message,
// raw and each field are cut at MaxFieldBytes, saying so, rather than lost. The
// project, cluster and node are stamped by ecp from the agent's credential,
// never taken from the agent's lines. In Elasticsearch the documents go to
// daily indices "<indexPrefix>-YYYY.MM.DD" (by the line's UTC date) whose
// mapping an index template installed by the Writer fixes (keywords for the
// filters, date_nanos for the time). In VictoriaLogs project, cluster and
// node are the stream fields.
//
// log_id is derived from cluster, file, offset, the line's time and its raw
// text, and is also the Elasticsearch _id. The time and text are in it because
// EMQX's disk_log wraps: emqx.log.1 is overwritten and its offsets start again
// at zero, so cluster+file+offset alone would let a new line replace an old
// one. log_id is written in the letters a to p only (hex with a..p for
// 0..f): VictoriaLogs sorts strings "naturally", comparing digit runs as
// numbers, and a digit-free id sorts the same way there as in Elasticsearch
// and as the LogsQL "<" comparison does, which paging relies on.
//
// # Exactly once
//
// The agent advances its file offsets only after ecp acknowledged a batch, and
// ecp acknowledges only after Writer.Write returned without error, that is
// after the store accepted every document (or rejected it for good, see
// Result.Rejected). So no line is lost. Duplicates come from retries of a
// batch the store did take but whose acknowledgement did not reach the agent.
//
//   - Elasticsearch: a retried line has the same _id and the "index" action
//     overwrites the document with itself. Exactly once, whatever the path.
//   - VictoriaLogs ignores _id and would store the line again. The Writer
//     keeps a window of recently stored batches keyed by cluster and the
//     agent's BatchID (stable across retries, see agentproto.LogBatch): a
//     batch already stored within the window is acknowledged without being
//     written again, and a batch still in flight is answered with
//     backpressure, so the agent's retry cannot race the first attempt. The
//     window is in memory, per ecp replica, sized by WriterOptions.DedupWindow
//     and DedupMaxBatches; the agent retries within seconds, far inside it.
//     Residual risks, accepted and written down: a retry that reaches another
//     ecp replica after a lost acknowledgement, an ecp restart between the
//     store's accept and the acknowledgement, and a bulk request cut off by a
//     timeout after VictoriaLogs had already ingested part of it (it ingests
//     while reading). Each can duplicate lines of one batch in VictoriaLogs;
//     query results carry log_id, so duplicates are recognisable.
//
// # Backpressure
//
// The Writer never drops lines. Transient failures (connection errors, 429,
// 5xx, per-document 429/5xx in a bulk reply) are retried with jittered
// exponential backoff for at most WriterOptions.MaxRetryTime; only the
// documents that failed are sent again. When the time runs out, or too many
// bulk requests are already in flight, Write returns a *BackpressureError
// (errors.Is(err, ErrBackpressure)) with a Retry-After hint, which ecp turns
// into 429/503 for the agent, which keeps the lines and retries. Documents the
// store refuses for good (a 400 mapping error) are reported per document in
// Result.Rejected and counted, not retried forever.
//
// # Queries
//
// Query.Projects is the caller's scope and is mandatory (ErrNoScope). With
// Elasticsearch every filter is a term, terms, range, match_phrase or
// wildcard clause in a bool filter, so user input is only ever a JSON
// string. With VictoriaLogs the scope is the leading stream filter and every
// user value is a strconv.Quote'd LogsQL literal. The text a user types
// (Query.Text) finds lines that contain it anywhere, in any case: a
// regexp.QuoteMeta'd case-insensitive regexp filter in LogsQL; in
// Elasticsearch a phrase match or every typed word inside a word of raw
// (escaped wildcard patterns on its analyzed terms). Results carry the
// line's parsed fields. Paging is by cursor, not offset: the
// token holds the last item's (time, log_id), as Elasticsearch search_after
// sort values or as a LogsQL "strictly older" filter, so lines that arrive
// late never shift a page. The token also carries a fingerprint of the
// filters and is refused (FieldError on "pageToken") with other ones.
//
// # Wiring (for ecp's HTTP layer)
//
//   - PUT /system/log-receiver: decode into ReceiverConfig, KeepPassword(the
//     stored one), Validate (a *FieldError is httpapi.Invalid(Field,
//     Message)), persist with MarshalStored, then Writer.Configure. GET
//     marshals ReceiverConfig, which never carries the password.
//   - POST /system/log-receiver/test: Test(ctx, cfg, nil); its error message
//     is meant for the admin (ErrUnreachable, ErrUnauthorized, ErrWrongType).
//   - POST /agent/logs: Writer.Write(Batch{Project, Cluster, Node, BatchID,
//     Lines}) with project and cluster from the agent's credential. nil:
//     200 agentproto.LogBatchResponse{Accepted}; *BackpressureError: 429
//     when Overloaded, else 503, with Retry-After; ErrNotConfigured or any
//     other error: 503, the agent keeps its lines. Never acknowledge on error.
//   - GET /projects/{project}/logs: Querier.Query with Projects set to the
//     project the caller may read; a *FieldError is a 400 on that field.
package logstore
