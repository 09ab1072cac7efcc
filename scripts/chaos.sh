#!/usr/bin/env bash
# The chaos run (`make chaos`; not part of `make test`): starts its own
# Firestore and Pub/Sub emulators, builds bin/snapsweep and the driver once,
# and runs the driver (cmd/snapsweep-chaos), which starts the Compute fake
# and the serve instances, injects the faults and checks the invariants.
# See docs/chaos.md.
#
# Arguments go to the driver, e.g.  scripts/chaos.sh --seed 42 --fail-rate 0.5
# CHAOS_RUNS=N runs it N times in a row (fresh emulators each time) and fails
# if any run fails. Logs of run N go to ${CHAOS_LOGDIR:-bin/chaos}/<stamp>-N
# (driver.log is the driver's output; one log per process; summary.json).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${CHAOS_RUNS:-1}
logroot=${CHAOS_LOGDIR:-bin/chaos}
stamp=$(date -u +%Y%m%dT%H%M%SZ)

# Always its own emulators: the run freezes Firestore with SIGSTOP, which
# must never hit an emulator someone else is using.
unset FIRESTORE_EMULATOR_HOST PUBSUB_EMULATOR_HOST

# shellcheck source=scripts/emulators.sh
. scripts/emulators.sh
trap 'emulators_stop' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
trap 'exit 141' PIPE

mkdir -p bin
echo "chaos: building bin/snapsweep and bin/snapsweep-chaos"
go build -o bin/snapsweep ./cmd/snapsweep
go build -o bin/snapsweep-chaos ./cmd/snapsweep-chaos

failed=0
for n in $(seq 1 "$runs"); do
	echo "chaos: run $n of $runs: starting the emulators"
	emulators_start
	pgid=$(cat "$EMULATORS_DIR/firestore.pid")
	logdir="$logroot/$stamp-$n"
	mkdir -p "$logdir"
	status=0
	bin/snapsweep-chaos --bin bin/snapsweep --firestore-pgid "$pgid" \
		--logdir "$logdir" "$@" 2>&1 | tee "$logdir/driver.log" || status=$?
	# Unfreeze in any case (the driver does too, unless it was SIGKILLed).
	kill -CONT -- "-$pgid" 2>/dev/null || true
	emulators_stop
	unset FIRESTORE_EMULATOR_HOST PUBSUB_EMULATOR_HOST
	if ((status != 0)); then
		echo "chaos: run $n of $runs failed (exit $status)"
		failed=$status
	fi
done
exit "$failed"
