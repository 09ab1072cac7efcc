#!/usr/bin/env bash
# Acceptance check for the container, without a Docker engine (none runs
# here): "the binary runs as non-root and answers /health".
#
# It builds ./cmd/snapsweep exactly as the Dockerfile's builder stage does
# (static, -trimpath, stripped, version stamped), checks that the result is
# statically linked, and runs `snapsweep serve` the way the distroless
# :nonroot image runs it: uid/gid 65532 (when this script runs as root),
# working directory /, an environment holding only what Cloud Run would set
# (PORT) plus the emulator variables. Then it checks that:
#   - GET /health answers 200;
#   - the process runs under a non-zero uid;
#   - on SIGTERM it exits within Cloud Run's 10 s grace period.
#
# Uses the emulators in FIRESTORE_EMULATOR_HOST / PUBSUB_EMULATOR_HOST when
# set (as under scripts/test.sh), else starts its own.
set -euo pipefail
cd "$(dirname "$0")/.."

NONROOT_UID=65532 # distroless's "nonroot" user and group
VERSION=${VERSION:-$(git describe --always --dirty 2>/dev/null || echo dev)}

fail() {
	echo "container-check: FAIL: $*" >&2
	if [[ -n "${log:-}" && -s "$log" ]]; then
		echo "--- snapsweep output ---" >&2
		tail -n 50 "$log" >&2
		echo "--- end of snapsweep output ---" >&2
	fi
	exit 1
}

if ! go list ./cmd/snapsweep >/dev/null 2>&1; then
	fail "./cmd/snapsweep is not a buildable package yet"
fi

# shellcheck source=scripts/emulators.sh
. scripts/emulators.sh

work=$(mktemp -d "${TMPDIR:-/tmp}/snapsweep-container-check.XXXXXX")
chmod 755 "$work" # the non-root user must reach the binary
pid=
cleanup() {
	if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
		kill -KILL "$pid" 2>/dev/null || true
	fi
	emulators_stop
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
# Trapped, not ignored (children keep the default): bash reporting a killed
# child on a closed pipe would otherwise die of SIGPIPE before the EXIT trap.
trap 'exit 141' PIPE

emulators_launch

echo "container-check: building ./cmd/snapsweep (version $VERSION) as the Dockerfile does"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o "$work/snapsweep" ./cmd/snapsweep
chmod 755 "$work/snapsweep"
if command -v file >/dev/null 2>&1; then
	desc=$(file -b "$work/snapsweep")
	[[ "$desc" == *"statically linked"* ]] || fail "binary is not statically linked: $desc"
fi

emulators_wait

run_as=()
if [[ "$(id -u)" == 0 ]]; then
	if command -v setpriv >/dev/null 2>&1; then
		run_as=(setpriv "--reuid=$NONROOT_UID" "--regid=$NONROOT_UID" --clear-groups)
	else
		fail "running as root and setpriv (util-linux) is missing: cannot drop to uid $NONROOT_UID"
	fi
fi

port=$(_emu_free_port)
log="$work/snapsweep.log"
: >"$log"
chmod 666 "$log"
# Plain-http Compute endpoint: no credentials are looked for, and nothing
# listens there, so nothing can be deleted.
(cd / && exec env -i \
	PATH=/usr/local/bin:/usr/bin:/bin \
	HOME=/home/nonroot \
	PORT="$port" \
	GOOGLE_CLOUD_PROJECT=snapsweep-container-check \
	FIRESTORE_EMULATOR_HOST="$FIRESTORE_EMULATOR_HOST" \
	PUBSUB_EMULATOR_HOST="$PUBSUB_EMULATOR_HOST" \
	SNAPSWEEP_COMPUTE_ENDPOINT=http://127.0.0.1:9 \
	"${run_as[@]}" "$work/snapsweep" serve) >>"$log" 2>&1 &
pid=$!

code=
for _ in $(seq 1 150); do
	kill -0 "$pid" 2>/dev/null || fail "snapsweep serve exited before answering /health"
	code=$(curl -s -m 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/health" || true)
	[[ "$code" == 200 ]] && break
	sleep 0.2
done
[[ "$code" == 200 ]] || fail "GET /health answered ${code:-nothing} within 30 s, want 200"

uid=$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")
[[ "$uid" != 0 ]] || fail "snapsweep runs as root"
echo "container-check: /health answered 200, process runs as uid $uid"

kill -TERM "$pid"
for _ in $(seq 1 100); do
	kill -0 "$pid" 2>/dev/null || break
	sleep 0.1
done
if kill -0 "$pid" 2>/dev/null; then
	fail "snapsweep did not exit within 10 s of SIGTERM (Cloud Run kills it then)"
fi
status=0
wait "$pid" || status=$?
pid=
echo "container-check: exited on SIGTERM with status $status"
echo "container-check: PASS (binary is static, runs as non-root, answers /health, stops on SIGTERM)"
