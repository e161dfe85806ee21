// Package fleet is ecp's side of the agent protocol (agentproto): it
// registers agents, receives their reports, keeps each managed cluster's
// lifecycle state (created → registering → running ⇄ abnormal) and tells
// every agent its desired state.
//
// # Stored state
//
// fleet reads the cluster specs the cluster API writes under
// registry.Prefix and owns the keys under Prefix:
//
//	/ecp/fleet/tokens/<sha256(token)>     pending registration token: cluster id and expiry,
//	                                      on a lease that outlives the expiry by a week
//	                                      (so its holder hears TokenExpired, then TokenInvalid)
//	/ecp/fleet/agents/<cluster>           bound agent: sha256(credential), hostname, URLs,
//	                                      log collection; its create revision names the binding
//	/ecp/fleet/status/<cluster>           lifecycle state and reason, version, node count,
//	                                      start time, managed since; written only on change
//	/ecp/fleet/identity/<sha256(name,node)>  one per (EMQX cluster name, node name) an agent
//	                                      reported: the binding holding that cluster
//	                                      (see identity.go: one cluster, one entry)
//	/ecp/fleet/replicas/<replica>         presence, on the replica's session lease
//	/ecp/fleet/digests/<replica>/<n>      what the replica heard lately, on its session lease
//	/ecp/fleet/leader/…                   the sweeper's concurrency.Election
//	/ecp/fleet/dashboard/…, dashboard-answers/…  dashboard jump requests and sealed answers,
//	                                      on 30 s leases (see "Dashboard jump")
//
// Tokens and credentials carry 256 random bits and are stored only as
// SHA-256 hashes. A token is consumed in the same transaction that binds the
// agent, guarded by the token's mod revision, so of two agents racing with
// one token exactly one is bound. A credential reads
// "ecpagent_<cluster>.<random>": the cluster id in clear makes authentication
// one map lookup and one constant-time hash compare against memory, with no
// etcd round trip and no slow password hash on the report path. Issuing a
// token deletes the bound agent and any earlier token; unregister deletes the
// agent and returns the state to created; Forget deletes everything fleet
// keeps about the cluster.
//
// # Memory and the one watch
//
// Every replica mirrors the specs and its own prefix in memory through the
// replica's one mirror of the records (registry.Mirror, which the cluster
// lists and the monitoring overview read too): fleet has it follow fleet's
// keys as well (Follow), so one load and one watch over one key range
// deliver spec and binding events in revision order, shared by Status,
// authentication and all desired-state long-polls. Each mirrored record keeps the etcd revision of
// its last change, deletions included, so the replica's own writes can be
// applied at once (read-your-writes) without an older watch event undoing
// them. When memory disagrees with a credential, the replica reads the spec,
// the agent and the status keys at one revision before refusing it, so a
// binding made on another replica that its watch has not delivered yet is
// never refused nor told to unregister.
//
// # Parts
//
// Fleet composes parts with one job each: gate (gate.go) admits agent
// calls (503 while loading, 429 beyond the in-flight and long-poll
// bounds); memory (state.go) holds the entries and the state tally and
// routes each mirrored key to the part that owns it (applyLocked);
// liveness (liveness.go) keeps one deadline per agent in a heap, the
// sweeper's leadership and grace; gossip (digest.go) announces the replica
// and exchanges digests; identities (identity.go) keeps one EMQX cluster to
// one entry; dashboards (dashboard.go) carries the dashboard jump;
// credentials (credentials.go) authenticates agents. Fleet itself serves
// the agent API (register, report, unregister, long-poll), writes the
// agent's state (updateStatus) and wires the parts to the records mirror
// (watch.go). memory's lock guards the parts that work on the entries: a
// report's snapshot, deadline and digest mark move in one step; gate holds
// no lock.
//
// # Reports and writes
//
// A report updates the in-memory snapshot. etcd is written only when the
// status record would change: state, reason code, EMQX version, node count,
// start time (beyond a minute of jitter), managed since or agent version.
// Counters and the report time are never written per report. Status writes
// are compare-and-swap on the record's mod revision plus guards (the agent
// binding; for the sweeper, its leader key), retried after reading the fresh
// record.
//
// # Liveness
//
// Each replica keeps a min-heap of bound agents ordered by their deadline:
// when it last heard of them plus SilentIntervals × the longer of ecp's
// report interval and the interval the agent reports it runs (stored in the
// status record, so every replica agrees; one entry per cluster, fixed in
// place on every report). The sweeper runs only on the leader elected with
// concurrency.Election and pops just the entries whose deadline passed,
// marking them abnormal with AgentSilent. After it becomes leader,
// and so after any restart, it first waits a full SilentIntervals × interval
// plus the reconnect backoff an agent may be in (up to
// agentproto.ReconnectBackoffMax; see becomeLeader): a restart, a failover
// or an outage of ecp marks no cluster abnormal. An agent that registered
// but never reports goes silent the same way.
//
// # Several replicas
//
// Behind a load balancer a report may land on any replica; the leader must
// hear of it. Every replica publishes, every interval/2 and only when another
// replica is present, a digest of the clusters it served reports for since
// its previous digest: per cluster the binding revision, report time and
// latest counters, gzip'd JSON in chunks of at most 4000 clusters, under keys
// on its session lease (they vanish with the replica). Every replica watches
// the digests: the leader treats each item as hearing from the agent at the
// report's time, and every replica uses the counters for Status. A digest
// item is a complete observation, so order and loss of old digests do not
// matter; items of a replaced binding are ignored. A replica that heard
// nothing publishes an empty digest, and a digest carries when it was
// published: the leader marks an agent silent only once every other replica
// has told what it heard up to one interval before the agent's deadline.
// Reports served by a replica that could not publish (etcd without a leader
// or quorum, or a replica killed whose lease has not expired yet) thus never
// count as silence; a failed digest's clusters go into the next one. A
// replica that publishes nothing for a silence window while the leader's
// own digests go through is stuck and no longer waited for. The
// cost is about two etcd writes per replica per interval whatever the fleet
// size. A leader may
// learn of a remote report up to interval/2 late, well inside the two spare
// intervals of the silence threshold. State lives in etcd, so every replica
// serves the same state; counters may lag by interval/2 on replicas that did
// not serve the report.
//
// # Desired state
//
// The desired state's revision is the newer of the spec's and the binding's
// etcd revision (a deletion counts), so a deleted entry or a revoked
// credential also moves it forward and the reply then says unregister. A
// long-poll waits on its cluster's change channel, closed by the shared watch,
// and so answers within the watch's latency (milliseconds) of a change.
// Package longpoll holds the waiting poll: on HTTP/1.1 it takes the
// connection over and keeps only the socket; on HTTP/2, which the agent
// prefers so that its report, long-poll, remote write and logs share one
// connection (one descriptor per agent on ecp), it parks in its handler,
// about 7 KB more resident memory per agent than the taken-over poll and
// half the descriptors (longpoll's package doc has the figures).
//
// # Dashboard jump
//
// DashboardSession serves the login-free jump into a cluster's EMQX
// dashboard. It makes an HPKE key pair (X25519) for the one request and
// stores {publicKey, role} at
//
//	/ecp/fleet/dashboard/<cluster>/<request>   on a lease of DashboardRequestTTL (30 s)
//
// The shared watch mirrors it into the entry and raises the desired
// revision, so the agent's long-poll, on whatever replica, wakes with it in
// DashboardSessions. The agent logs in to EMQX and posts its login sealed to
// the public key at agentproto.PathDashboardSession; the replica that takes
// it checks that the request exists for the agent's own cluster and stores
// the answer, still sealed, at
//
//	/ecp/fleet/dashboard-answers/<request>     on the request's lease, first answer only
//
// which the waiting replica watches, opens with the private key that never
// left its memory, and returns as a secret.String; it then revokes the lease.
// etcd never holds the token in the clear. No agent, no answer within the
// wait, or an agent's problem (EMQX down, password refused) is an error the
// caller turns into the plain redirect. An expired request drops out of the
// desired state without a new revision.
//
// # Load
//
// Register, report and unregister share MaxInFlight slots and long-polls
// MaxWaiters; beyond them agents get 429 with Retry-After (their backoff adds
// jitter), and 503 with Retry-After until this replica has loaded its state.
package fleet
