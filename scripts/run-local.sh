#!/usr/bin/env bash
# Runs snapsweep locally against the Firestore and Pub/Sub emulators
# (`make run`): starts them (or uses those in FIRESTORE_EMULATOR_HOST /
# PUBSUB_EMULATOR_HOST), creates the topics and the push subscriptions that
# Terraform creates in production, pointed at the local service, then runs
# `go run ./cmd/snapsweep serve` until interrupted.
#
# Publish a migration event to try it:
#   curl -X POST "http://$PUBSUB_EMULATOR_HOST/v1/projects/snapsweep-local/topics/migration-events:publish" \
#     -H 'content-type: application/json' -d '{"messages":[{"data":"'"$(base64 -w0 event.json)"'"}]}'
#
# Without SNAPSWEEP_COMPUTE_ENDPOINT it also starts `snapsweep fake-compute`
# (the in-process Compute fake on 127.0.0.1:8089) and points the service at
# it, so no GCP account or credentials are needed. Create a snapshot in it:
#   curl -X POST localhost:8089/fake/snapshots \
#     -d '{"project":"snapsweep-local","name":"snap-1","labels":{"migration-session":"s1"}}'
set -euo pipefail
cd "$(dirname "$0")/.."

export PORT=${PORT:-8080}
export GOOGLE_CLOUD_PROJECT=${GOOGLE_CLOUD_PROJECT:-snapsweep-local}
export SNAPSWEEP_EVENTS_TOPIC=${SNAPSWEEP_EVENTS_TOPIC:-migration-events}
export SNAPSWEEP_CLEANUP_TOPIC=${SNAPSWEEP_CLEANUP_TOPIC:-snapshot-cleanup}
start_fake=0
if [[ -z "${SNAPSWEEP_COMPUTE_ENDPOINT:-}" ]]; then
	export SNAPSWEEP_COMPUTE_ENDPOINT=http://127.0.0.1:8089
	start_fake=1
fi

# shellcheck source=scripts/emulators.sh
. scripts/emulators.sh
trap emulators_stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
# Trapped, not ignored (children keep the default): bash reporting a killed
# child on a closed pipe would otherwise die of SIGPIPE before the EXIT trap.
trap 'exit 141' PIPE
emulators_start

pubsub="http://$PUBSUB_EMULATOR_HOST/v1/projects/$GOOGLE_CLOUD_PROJECT"
put() { # put PATH JSON: create a Pub/Sub resource; 409 (exists) is fine.
	local code
	code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT -H 'content-type: application/json' -d "$2" "$pubsub/$1")
	case "$code" in
	200 | 409) ;;
	*)
		echo "run-local: PUT $1 answered $code" >&2
		return 1
		;;
	esac
}
# One push subscription per topic. Production has one cleanup subscription
# per managed project (filtered on the project attribute, terraform/pubsub.tf);
# the Pub/Sub emulator stores filters but does not apply them (measured:
# bus.TestProjectFiltersOnTheEmulator), so filtered subscriptions here would
# each push every cleanup message. One unfiltered one serves locally.
for pair in "$SNAPSWEEP_EVENTS_TOPIC:/pubsub/migration-events" "$SNAPSWEEP_CLEANUP_TOPIC:/pubsub/snapshot-cleanup"; do
	topic=${pair%%:*} path=${pair#*:}
	put "topics/$topic" '{}'
	put "subscriptions/$topic-push" "{\"topic\":\"projects/$GOOGLE_CLOUD_PROJECT/topics/$topic\",\"ackDeadlineSeconds\":60,\"pushConfig\":{\"pushEndpoint\":\"http://127.0.0.1:$PORT$path\"}}"
	echo "run-local: topic $topic pushes to http://127.0.0.1:$PORT$path"
done

mkdir -p bin
go build -o bin/snapsweep ./cmd/snapsweep
if ((start_fake)); then
	bin/snapsweep fake-compute --addr 127.0.0.1:8089 &
	fake_pid=$!
	trap 'kill "$fake_pid" 2>/dev/null || true; emulators_stop' EXIT
	echo "run-local: fake Compute API on $SNAPSWEEP_COMPUTE_ENDPOINT"
fi

echo "run-local: snapsweep serve on :$PORT (project $GOOGLE_CLOUD_PROJECT, dry run ${SNAPSWEEP_DRY_RUN:-false}); Ctrl-C stops it and the emulators"
status=0
bin/snapsweep serve || status=$?
exit "$status"
