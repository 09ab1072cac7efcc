// Package cleanup is snapsweep's deletion side: the Scheduler claims the
// snapshots the rules allow and publishes one cleanup message each (and
// rolls a claim back when its message was not sent); the Engine handles a
// cleanup message (lease, ownership and identity checks, the Compute
// delete under a rate limit, a circuit breaker and retries, and what the
// delete's answer means for the record); the Judge decides a completed
// session's outcome; Plan is the one plan of a manual cleanup, shared by
// its dry run and its real run.
//
// It changes a record only through package lifecycle's transitions, inside
// a registry transaction; it declares the few methods it needs of the
// registry and of Compute and must not reach past them. Nothing it needs
// across deliveries lives in process memory: leases and claims are in the
// registry.
package cleanup
