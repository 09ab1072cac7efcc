#!/usr/bin/env bash
# Starts the Firestore and Pub/Sub emulators on free loopback ports and
# exports FIRESTORE_EMULATOR_HOST and PUBSUB_EMULATOR_HOST.
#
# Run it to wrap a command:   scripts/emulators.sh go test -bench . ./store/
# Or source it from a script: . scripts/emulators.sh
#                             trap emulators_stop EXIT
#                             emulators_launch    # returns at once
#                             ...                 # other work meanwhile
#                             emulators_wait      # fails if one cannot start
# (emulators_start does both.)
#
# An emulator whose variable is already set is used as it is. Each emulator
# runs in a session of its own (setsid): gcloud otherwise moves itself into a
# new process group, and killing gcloud alone leaves the Java emulator
# running and holding the port. emulators_stop kills exactly those sessions'
# process groups.

# Seconds an emulator may take to answer GET / after start.
EMULATORS_READY_TIMEOUT=${EMULATORS_READY_TIMEOUT:-60}

EMULATORS_DIR=
EMULATORS_PGIDS=()
declare -A _EMU_PORT=() _EMU_TRIES=()

_emu_var() {
	case "$1" in
	firestore) echo FIRESTORE_EMULATOR_HOST ;;
	pubsub) echo PUBSUB_EMULATOR_HOST ;;
	esac
}

# _emu_free_port prints a port that nothing answers on. It draws below the
# kernel's ephemeral range (32768+), where tests' own listeners on port 0 and
# outgoing connections live.
_emu_free_port() {
	local port i
	for i in $(seq 1 50); do
		port=$((20000 + RANDOM % 12000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "$port"
			return 0
		fi
	done
	echo "emulators: no free port found" >&2
	return 1
}

# _emu_spawn NAME: starts emulator NAME on a new port, in its own session.
_emu_spawn() {
	local name=$1 port args
	port=$(_emu_free_port) || return 1
	_EMU_PORT[$name]=$port
	_EMU_TRIES[$name]=$((${_EMU_TRIES[$name]:-0} + 1))
	case "$name" in
	firestore) args=(emulators firestore start "--host-port=127.0.0.1:$port") ;;
	pubsub)
		# Its own data directory: the default under ~/.config/gcloud is shared
		# by every Pub/Sub emulator on the machine.
		mkdir -p "$EMULATORS_DIR/pubsub-data"
		args=(beta emulators pubsub start "--host-port=127.0.0.1:$port" "--data-dir=$EMULATORS_DIR/pubsub-data")
		;;
	esac
	rm -f "$EMULATORS_DIR/$name.pid"
	# The inner shell records its pid, which setsid made a session and
	# process group leader, whether or not setsid had to fork.
	CLOUDSDK_CORE_DISABLE_PROMPTS=1 setsid bash -c 'echo $$ >"$0"; exec "$@"' \
		"$EMULATORS_DIR/$name.pid" gcloud "${args[@]}" \
		>>"$EMULATORS_DIR/$name.log" 2>&1 </dev/null &
	local i
	for i in $(seq 1 50); do
		[[ -s "$EMULATORS_DIR/$name.pid" ]] && break
		sleep 0.1
	done
	if [[ ! -s "$EMULATORS_DIR/$name.pid" ]]; then
		echo "emulators: $name did not start" >&2
		return 1
	fi
	EMULATORS_PGIDS+=("$(cat "$EMULATORS_DIR/$name.pid")")
}

# emulators_launch starts every emulator whose variable is unset, without
# waiting for it to answer.
emulators_launch() {
	local missing=() tool name var
	for tool in gcloud java setsid curl; do
		command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
	done
	if ((${#missing[@]})); then
		echo "emulators: not on PATH: ${missing[*]} (the emulators need the Google Cloud SDK with its firestore and pubsub emulator components, Java 17+, setsid and curl)" >&2
		return 1
	fi
	if [[ -z "$EMULATORS_DIR" ]]; then
		EMULATORS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/snapsweep-emulators.XXXXXX")
	fi
	for name in firestore pubsub; do
		var=$(_emu_var "$name")
		if [[ -n "${!var:-}" ]]; then
			echo "emulators: using $name at $var=${!var}"
			continue
		fi
		_emu_spawn "$name" || return 1
	done
}

# emulators_wait waits until every launched emulator answers GET / and
# exports its variable. An emulator that exits at once (its port was taken
# meanwhile) is started again on another port; one that does not answer in
# time fails, and its log is printed.
emulators_wait() {
	local name var port pgid deadline
	for name in firestore pubsub; do
		var=$(_emu_var "$name")
		[[ -n "${_EMU_PORT[$name]:-}" ]] || continue
		deadline=$((SECONDS + EMULATORS_READY_TIMEOUT))
		while :; do
			port=${_EMU_PORT[$name]}
			if curl -fsS -m 2 -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null; then
				export "$var=127.0.0.1:$port"
				echo "emulators: $name ready, $var=127.0.0.1:$port"
				break
			fi
			pgid=$(cat "$EMULATORS_DIR/$name.pid")
			if ! kill -0 -- "-$pgid" 2>/dev/null; then
				if ((${_EMU_TRIES[$name]} < 3)); then
					echo "emulators: $name exited at start, trying another port" >&2
					_emu_spawn "$name" || return 1
					continue
				fi
				_emu_fail "$name" "exited at start ${_EMU_TRIES[$name]} times"
				return 1
			fi
			if ((SECONDS >= deadline)); then
				_emu_fail "$name" "did not answer on 127.0.0.1:$port within ${EMULATORS_READY_TIMEOUT}s"
				return 1
			fi
			sleep 0.2
		done
	done
}

_emu_fail() {
	echo "emulators: the $1 emulator $2. Its log ($EMULATORS_DIR/$1.log):" >&2
	tail -n 60 "$EMULATORS_DIR/$1.log" >&2 || true
	echo "emulators: end of the $1 emulator log" >&2
}

# emulators_start launches the emulators and waits until they answer.
emulators_start() {
	emulators_launch && emulators_wait
}

# emulators_stop kills the process groups this script started, and only
# those, then removes their files.
emulators_stop() {
	local pgid i alive
	for pgid in "${EMULATORS_PGIDS[@]}"; do
		kill -TERM -- "-$pgid" 2>/dev/null || true
	done
	for i in $(seq 1 20); do
		alive=0
		for pgid in "${EMULATORS_PGIDS[@]}"; do
			kill -0 -- "-$pgid" 2>/dev/null && alive=1
		done
		((alive)) || break
		sleep 0.1
	done
	for pgid in "${EMULATORS_PGIDS[@]}"; do
		kill -KILL -- "-$pgid" 2>/dev/null || true
	done
	EMULATORS_PGIDS=()
	if [[ -n "$EMULATORS_DIR" ]]; then
		rm -rf "$EMULATORS_DIR"
		EMULATORS_DIR=
	fi
}

# Run as a command: start the emulators, run "$@" with their variables set,
# stop them, and exit with the command's status.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
	set -euo pipefail
	if (($# == 0)); then
		echo "usage: $0 COMMAND [ARG...]" >&2
		exit 2
	fi
	trap emulators_stop EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	trap 'exit 129' HUP
	# Trapped, not ignored (children keep the default): bash reporting a
	# killed child on a closed pipe would otherwise die of SIGPIPE before the
	# EXIT trap.
	trap 'exit 141' PIPE
	emulators_start
	status=0
	"$@" || status=$?
	exit "$status"
fi
