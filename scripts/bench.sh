#!/usr/bin/env bash
# Runs snapsweep's two benchmarks and writes their figures into
# BENCHMARKS.md (machine, date, Go version, load, the exact commands):
#
#   BenchmarkCleanupThroughput  ./cleanup/        (no emulator needed)
#   BenchmarkIngest             ./cmd/snapsweep/  (Firestore + Pub/Sub emulators)
#
# The emulators are started once, the way scripts/test.sh starts them
# (scripts/emulators.sh: free loopback ports, own process groups, stopped on
# exit); an emulator whose variable is already set is used as it is.
#
# Usage: scripts/bench.sh [OUTPUT]   (default BENCHMARKS.md at the repo root)
#
# Each benchmark runs its fixed workload once (-benchtime 1x -count 1). The
# machine is measured as it is: if other work runs meanwhile the load
# averages recorded next to each figure show it.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-BENCHMARKS.md}

# shellcheck source=scripts/emulators.sh
. scripts/emulators.sh
work=$(mktemp -d "${TMPDIR:-/tmp}/snapsweep-bench.XXXXXX")
cleanup_all() {
	emulators_stop
	rm -rf "$work"
}
trap cleanup_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
# A benchmark must not skip for want of an emulator.
unset SNAPSWEEP_SKIP_EMULATORS

step() { printf '\n==> %s\n' "$*" >&2; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# The commands, exactly as run (and as printed for reproduction). The
# emulators come from scripts/emulators.sh here; run alone, the ingest
# benchmark's TestMain starts them itself.
cleanup_cmd="go test -run '^\$' -bench '^BenchmarkCleanupThroughput\$' -benchtime 1x -count 1 -timeout 30m ./cleanup/"
ingest_cmd="go test -run '^\$' -bench '^BenchmarkIngest\$' -benchtime 1x -count 1 -timeout 60m ./cmd/snapsweep/"
sweep_cmd="go test -run '^\$' -bench '^BenchmarkSweepReads\$' -benchtime 1x -count 1 -timeout 60m ./sweep/"
load_cmd="go test -run '^\$' -bench '^BenchmarkLoadBurst\$' -benchtime 1x -count 1 -timeout 10m ./cmd/snapsweep/"
judge_cmd="go test -run '^\$' -bench '^BenchmarkSessionJudgement\$' -benchtime 1x -count 1 -timeout 30m ./cleanup/"
pacing_cmd="bin/snapsweep-chaos bench --bin bin/snapsweep --logdir bin/bench one-project three-projects three-projects-paced fast-alone latency gcloud-peer"

step "build the test binaries (not timed)"
go test -c -o "$work/" ./cleanup/ ./cmd/snapsweep/

step "start emulators"
emulators_start >&2

# run NAME CMD: runs CMD, keeps its output in $work/NAME.txt and the load
# averages before and after in $work/NAME.load; returns CMD's status.
run() {
	local name=$1 cmd=$2 status=0
	step "$cmd"
	echo "before: $(loadavg)" >"$work/$name.load"
	local t0=$SECONDS
	bash -c "$cmd" 2>&1 | tee "$work/$name.txt" >&2 || status=${PIPESTATUS[0]}
	echo "after: $(loadavg)" >>"$work/$name.load"
	echo "wall: $((SECONDS - t0)) s" >>"$work/$name.load"
	echo "$status" >"$work/$name.status"
	return "$status"
}

failed=0
run cleanup "$cleanup_cmd" || failed=1
run ingest "$ingest_cmd" || failed=1
run sweep "$sweep_cmd" || failed=1
run load "$load_cmd" || failed=1
run judge "$judge_cmd" || failed=1
step "build bin/snapsweep and bin/snapsweep-chaos"
go build -o bin/snapsweep ./cmd/snapsweep
go build -o bin/snapsweep-chaos ./cmd/snapsweep-chaos
run pacing "$pacing_cmd" || failed=1
step "scripts/bench-process.sh"
bash scripts/bench-process.sh 5 >"$work/process.md" || failed=1

# metric FILE NAME UNIT prints the value reported with UNIT on the result
# line of benchmark NAME (without the -GOMAXPROCS suffix), or "n/a".
metric() {
	awk -v name="$2" -v unit="$3" '
		{ n = $1; sub(/-[0-9]+$/, "", n) }
		n == name { for (i = 3; i < NF; i++) if ($(i + 1) == unit) { print $i; found = 1; exit } }
		END { if (!found) print "n/a" }' "$1"
}

# fmt VALUE DIGITS rounds a number for the tables.
fmt() {
	if [[ $1 == n/a ]]; then echo "n/a"; else LC_ALL=C printf "%.${2}f" "$1"; fi
}

status_of() {
	local s
	s=$(cat "$work/$1.status")
	if [[ $s == 0 ]]; then echo "ok"; else echo "**FAILED (exit $s)**"; fi
}

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
[[ -n $cpu ]] || cpu=$(uname -m)
commit=$(git describe --always --dirty 2>/dev/null || echo unknown)
nproc=$(nproc)

step "write $out"
c="$work/cleanup.txt"
i="$work/ingest.txt"
{
	echo "# Benchmarks"
	echo
	echo "Written by \`scripts/bench.sh\`; rerun it to refresh this file, do not edit by hand."
	echo
	echo "| | |"
	echo "|---|---|"
	echo "| Date (UTC) | $(date -u '+%Y-%m-%d %H:%M:%S') |"
	echo "| CPUs (\`nproc\`) | $nproc |"
	echo "| CPU model | $cpu |"
	echo "| Go | $(go version) |"
	echo "| Kernel | $(uname -sr) |"
	echo "| Commit | \`$commit\` (uncommitted changes when it ends in -dirty) |"
	echo "| Emulators | Firestore at \`$FIRESTORE_EMULATOR_HOST\`, Pub/Sub at \`$PUBSUB_EMULATOR_HOST\` ($(gcloud version 2>/dev/null | head -1 || echo 'gcloud version unknown')) |"
	echo
	echo "Load averages (1, 5, 15 min) were recorded before and after each benchmark. Everything"
	echo "shares the $nproc CPUs with whatever else runs on the machine (the emulators' JVMs"
	echo "included): a 1-minute load well above $nproc means the figures are lower than an idle"
	echo "machine would give."
	echo
	echo "## Reproduce"
	echo
	echo "All of it (starts the emulators, runs both, rewrites this file; \`make bench\` runs the same):"
	echo
	echo '```sh'
	echo "scripts/bench.sh"
	echo '```'
	echo
	echo "Each benchmark alone (the second starts its own emulators through its TestMain unless"
	echo "\`FIRESTORE_EMULATOR_HOST\` and \`PUBSUB_EMULATOR_HOST\` are set):"
	echo
	echo '```sh'
	echo "$cleanup_cmd"
	echo "$ingest_cmd"
	echo "$sweep_cmd"
	echo "$load_cmd"
	echo "$judge_cmd"
	echo "$pacing_cmd   # after go build -o bin/ ./cmd/snapsweep ./cmd/snapsweep-chaos"
	echo "scripts/bench-process.sh"
	echo '```'
	echo
	echo "## Cleanup throughput (\`BenchmarkCleanupThroughput\`, ./cleanup) — $(status_of cleanup)"
	echo
	echo "Compute's delete quota as Compute counts it: per project, in synchronized wall-clock minutes"
	echo "(\`gcefake\` answers 403 \`rateLimitExceeded\` above it). Each project gets 2.1 minutes of its"
	echo "quota in snapshots (\`store.NewMemory()\`, task succeeded, label matching, cleanup_pending);"
	echo "the real Compute client reaches the fake over loopback HTTP, delete operations take 200 ms."
	echo "Engine: each project paced at 1.1 × its quota (so the quota binds and the pause until the next"
	echo "whole minute holds the project at it), concurrency 16 shared equally by the projects. 200"
	echo "goroutines call \`Engine.Handle\` on the projects' messages interleaved, as Pub/Sub push would,"
	echo "redelivering after 1 s every message answered with \`ErrRetryLater\` or \`pending\`. The fake and"
	echo "the engine (clock, sleeps, rate limiters) share a clock that runs 5× faster than real time, so a"
	echo "quota minute takes 12 s; HTTP, the client's operation polls and the store run in real time. The"
	echo "first two whole quota minutes are measured. Afterwards every snapshot must be gone and none"
	echo "deleted twice (the benchmark fails otherwise)."
	echo
	echo "| Run | Quota (deletes/min) | Deletions per quota minute ÷ quota (mean) | Worst minute | Quota errors per minute |"
	echo "|---|---|---|---|---|"
	b1=BenchmarkCleanupThroughput/one-project
	echo "| one project | 600 | $(fmt "$(metric "$c" $b1 quota-fraction)" 3) | $(fmt "$(metric "$c" $b1 worst-minute-fraction)" 3) | $(fmt "$(metric "$c" $b1 quota-errors/min)" 1) |"
	b3=BenchmarkCleanupThroughput/three-projects
	for q in 60 300 1200; do
		echo "| three projects at once | $q | $(fmt "$(metric "$c" $b3 "q$q-quota-fraction")" 3) | $(fmt "$(metric "$c" $b3 "q$q-worst-minute-fraction")" 3) | $(fmt "$(metric "$c" $b3 "q$q-quota-errors/min")" 1) |"
	done
	echo
	echo "Redeliveries: $(fmt "$(metric "$c" $b1 redeliveries)" 0) (one project), $(fmt "$(metric "$c" $b3 redeliveries)" 0) (three projects)."
	echo
	echo "Load average $(tr '\n' ';' <"$work/cleanup.load" | sed 's/;$//; s/;/; /g')."
	echo
	echo '```'
	cat "$c"
	echo '```'
	echo
	echo "## Ingest (\`BenchmarkIngest\`, ./cmd/snapsweep) — $(status_of ingest)"
	echo
	echo "The service built by \`NewService\` against the Firestore emulator, with a gRPC interceptor"
	echo "on the Firestore client counting RPCs: reads = BatchGetDocuments, GetDocument, RunQuery and"
	echo "RunAggregationQuery calls (docs-read = documents they returned, 1 for an empty query);"
	echo "writes = the writes inside Commit requests; txns = BeginTransaction calls (retries"
	echo "included); commits include the empty commit of a transaction that wrote nothing. Push"
	echo "requests are posted in-process to \`svc.Handler()\` (wrapped Pub/Sub push JSON); a non-2xx"
	echo "answer is redelivered after 250 ms. Cleanup messages go to the Pub/Sub emulator."
	echo
	echo "Mix: 200 tasks, per task 1 task.started, 3 snapshot.created, 1 task.completed (in order"
	echo "within a task), 32 requests in flight. \`mix\` puts 50 tasks in a session; \`mix-session-per-task\`"
	echo "gives every task a session of its own (no session document shared by concurrent events)."
	echo "Each session's session.started is applied before its tasks, untimed and not counted. An"
	echo "event still nacked after 20 attempts is given up (\"unacked\"; Pub/Sub would dead-letter it)"
	echo "and events/s counts acknowledged events only. The first events of a brand-new session"
	echo "racing to create its document can be run with \`SNAPSWEEP_BENCH_COLD_SESSIONS=1\` (not part"
	echo "of this run)."
	echo
	echo "| Mix | Events/s | p50 ms | p99 ms | Redeliveries | Unacked | Reads/event | Writes/event | Txns/event | Rollbacks/event |"
	echo "|---|---|---|---|---|---|---|---|---|---|"
	for m in mix mix-session-per-task; do
		n="BenchmarkIngest/$m"
		echo "| $m | $(fmt "$(metric "$i" "$n" events/s)" 1) | $(fmt "$(metric "$i" "$n" p50-ms)" 0) | $(fmt "$(metric "$i" "$n" p99-ms)" 0) | $(fmt "$(metric "$i" "$n" redeliveries)" 0) | $(fmt "$(metric "$i" "$n" unacked)" 0) | $(fmt "$(metric "$i" "$n" reads/event)" 2) | $(fmt "$(metric "$i" "$n" writes/event)" 2) | $(fmt "$(metric "$i" "$n" txns/event)" 2) | $(fmt "$(metric "$i" "$n" rollbacks/event)" 3) |"
	done
	echo
	echo "Per event type, each alone on fresh ids, one request at a time (so no contention):"
	echo
	echo "| Event | Reads | Docs read | Writes | Commits | Txns | Rollbacks | ms/event |"
	echo "|---|---|---|---|---|---|---|---|"
	for t in session.started task.started snapshot.created task.completed task.failed snapshot.deleted duplicate session.completed-5x3; do
		n="BenchmarkIngest/cost=$t"
		echo "| $t | $(fmt "$(metric "$i" "$n" reads/event)" 2) | $(fmt "$(metric "$i" "$n" docs-read/event)" 2) | $(fmt "$(metric "$i" "$n" writes/event)" 2) | $(fmt "$(metric "$i" "$n" commits/event)" 2) | $(fmt "$(metric "$i" "$n" txns/event)" 2) | $(fmt "$(metric "$i" "$n" rollbacks/event)" 2) | $(fmt "$(metric "$i" "$n" ms/event)" 1) |"
	done
	echo
	echo "\`duplicate\` is a redelivered task.started that was applied before; \`session.completed-5x3\`"
	echo "completes a session of 5 succeeded tasks with 3 snapshots each (it republishes their 15"
	echo "cleanup messages and judges the session). Times are the emulator's on this machine, not"
	echo "production Firestore's; the RPC counts per event carry over."
	echo
	echo "Load average $(tr '\n' ';' <"$work/ingest.load" | sed 's/;$//; s/;/; /g')."
	echo
	echo '```'
	cat "$i"
	echo '```'
	echo
	echo "## Sweep reads vs registry size (\`BenchmarkSweepReads\`, ./sweep) — $(status_of sweep)"
	echo
	echo "Registries of 1k, 10k and 50k snapshots in the Firestore emulator, 100 of them expired,"
	echo "one dry-run sweep each. Documents read are counted by a gRPC interceptor on the Firestore"
	echo "client (internal/fscount): documents returned by queries and gets, one per aggregation."
	echo "The goal is reads within 2x the work found plus a constant, whatever the registry size."
	echo "Wall times are the emulator's, which scans without indexes; production serves the same"
	echo "queries from the declared composite indexes."
	echo
	echo "| Registry | Docs read per sweep | Reads per expired snapshot | Wall per sweep (emulator) |"
	echo "|---|---|---|---|"
	for n in 1000 10000 50000; do
		b="BenchmarkSweepReads/registry=$n"
		echo "| $n | $(fmt "$(metric "$work/sweep.txt" "$b" docs-read/sweep)" 0) | $(fmt "$(metric "$work/sweep.txt" "$b" reads/expired-snapshot)" 2) | $(awk -v name="$b" '{ n = $1; sub(/-[0-9]+$/, "", n) } n == name { printf "%.1f s", $3 / 1e9 }' "$work/sweep.txt") |"
	done
	echo
	echo '```'
	grep -E '^(Benchmark|    bench_test)' "$work/sweep.txt" || true
	echo '```'
	echo
	echo "## Session judgement (\`BenchmarkSessionJudgement\`, ./cleanup) — $(status_of judge)"
	echo
	echo "A completed session of 2,000 snapshots, all finishing at once (32 at a time), each"
	echo "followed by the judgement the engine asks for, against the Firestore emulator; only the"
	echo "judge's client is counted, so every write is a write of the session document (commit"
	echo "attempts, aborted ones included). \`every-snapshot\` judges at once after each snapshot"
	echo "(the engine before issue 14), \`debounced\` is the engine's judgement now (one verdict per"
	echo "session per 10 s; the sweep's judgement, run after the burst, settles the verdict). A burst"
	echo "still running after 3 minutes is stopped there."
	echo
	echo "| Mode | Snapshots finished | Session txns | Session writes | Writes/s | Aborted | Burst s |"
	echo "|---|---|---|---|---|---|---|"
	for m in every-snapshot debounced; do
		b="BenchmarkSessionJudgement/$m"
		echo "| $m | $(fmt "$(metric "$work/judge.txt" "$b" snapshots)" 0) | $(fmt "$(metric "$work/judge.txt" "$b" session-txns)" 0) | $(fmt "$(metric "$work/judge.txt" "$b" session-writes)" 0) | $(fmt "$(metric "$work/judge.txt" "$b" session-writes/s)" 2) | $(fmt "$(metric "$work/judge.txt" "$b" aborted)" 0) | $(fmt "$(metric "$work/judge.txt" "$b" burst-s)" 1) |"
	done
	echo
	echo '```'
	grep -E '^(Benchmark|    session_bench_test)' "$work/judge.txt" || true
	echo '```'
	echo
	echo "## Pacing through \`snapsweep serve\` (\`snapsweep-chaos bench\`) — $(status_of pacing)"
	echo
	echo "Two \`snapsweep serve\` processes (\`SNAPSWEEP_DELETE_RATE=10\` per project and instance, the"
	echo "default concurrency) on the Firestore and Pub/Sub emulators. The driver plays Pub/Sub push"
	echo "at production concurrency: it pulls every subscription and posts push envelopes, up to 64"
	echo "in flight per subscription, with Pub/Sub's adaptive push window (it halves on a nack), and"
	echo "nacked messages come back after a 1 s to 10 s backoff. As in production (terraform/pubsub.tf)"
	echo "the cleanup topic has one subscription per project, filtered on the message's \`project\`"
	echo "attribute, each with its own push window (the emulator does not apply filters: each"
	echo "subscription's pusher does, acknowledging the rest unpushed). Compute is \`snapsweep fake-compute\`"
	echo "(\`gcefake\`), which counts each project's delete quota in synchronized wall-clock minutes"
	echo "as Compute does. Every task first registers its snapshots (3 per task, 1 in \`latency\`);"
	echo "once all are registered, every task.completed is published at once (\`latency\`: evenly over"
	echo "one minute). The pacing scenarios (all but \`latency\`) run on a backlog: cleanup push starts"
	echo "once every event is applied, so that a project's speed is the cleanup's pace and not the"
	echo "Firestore emulator's ingest speed (4 to 9 task.completed a second here, which the cleanup"
	echo "work shares); \`latency\` runs end to end. Deletion times are the fake's (when each delete"
	echo "operation took effect)."
	echo "\"Whole minutes\" are the synchronized minutes between a project's first and last deletion;"
	echo "the ratio is their deletions ÷ their quota. Quota errors are the fake's 403"
	echo "\`rateLimitExceeded\` answers for the project: in all, on average per instance and minute of"
	echo "deleting, and the worst instance-minute — the most one instance was answered in one"
	echo "synchronized minute (each instance reaches the fake under its own \`/caller/serve-N\` base"
	echo "URL, so the fake counts them apart)."
	echo "\`three-projects-paced\` is \`three-projects\` with each project's delete rate set to its quota"
	echo "shared by the instances (\`SNAPSWEEP_DELETE_RATE_BY_PROJECT=bench-slow=0.5,bench-mid=2.5,bench-fast=10\`,"
	echo "quota ÷ 60 ÷ 2), as docs/cleanup.md advises for projects whose quota is known."
	echo "\`fast-alone\` is the 1,200/min project of \`three-projects\` without the other two, for its"
	echo "top speed alone. \`gcloud-peer\` is the peer on the same fake and quota: one"
	echo "\`gcloud compute snapshots delete\` naming the 900 snapshots of \`one-project\`."
	echo
	sed -n '/^| scenario/,$p' "$work/pacing.txt"
	echo
	echo "Load average $(tr '\n' ';' <"$work/pacing.load" | sed 's/;$//; s/;/; /g')."
	echo
	echo "## Load burst (\`BenchmarkLoadBurst\`, ./cmd/snapsweep) — $(status_of load)"
	echo
	echo "5,000 push requests (per task: started, 3 snapshots, completed), 200 at a time, over real"
	echo "HTTP to one service instance with the embedded store and in-process Pub/Sub (pstest)."
	echo "Peak RSS is the benchmark process's (service, client and pstest together)."
	echo
	echo "| Req/s | p50 ms | p99 ms | Errors | Peak RSS MiB |"
	echo "|---|---|---|---|---|"
	b=BenchmarkLoadBurst
	echo "| $(fmt "$(metric "$work/load.txt" "$b" req/s)" 0) | $(fmt "$(metric "$work/load.txt" "$b" p50-ms)" 1) | $(fmt "$(metric "$work/load.txt" "$b" p99-ms)" 1) | $(fmt "$(metric "$work/load.txt" "$b" errors)" 0) | $(fmt "$(metric "$work/load.txt" "$b" peak-RSS-MiB)" 0) |"
	echo
	cat "$work/process.md"
} >"$work/BENCHMARKS.md"
mv "$work/BENCHMARKS.md" "$out"
step "wrote $out"
exit "$failed"
