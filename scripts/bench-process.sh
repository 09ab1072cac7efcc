#!/usr/bin/env bash
# Measures the snapsweep process itself and prints a Markdown section:
# binary size (built as the Dockerfile builds it), time from process start
# to the first /health 200, and resident memory after 5 s idle. It needs the
# emulators only so that `serve` can build its clients (it makes no call to
# them before /health); it starts them unless their variables are set.
#
# Usage: scripts/bench-process.sh [RUNS]   (default 5 start-up runs)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}

# shellcheck source=scripts/emulators.sh
. scripts/emulators.sh
work=$(mktemp -d "${TMPDIR:-/tmp}/snapsweep-proc.XXXXXX")
trap 'emulators_stop; rm -rf "$work"' EXIT
emulators_start >&2

CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$work/snapsweep" ./cmd/snapsweep
size=$(stat -c %s "$work/snapsweep")

port=$((20000 + RANDOM % 20000))
starts=()
rss=""
for i in $(seq 1 "$runs"); do
	t0=$(date +%s%N)
	PORT=$port GOOGLE_CLOUD_PROJECT=bench-proc SNAPSWEEP_COMPUTE_ENDPOINT=http://127.0.0.1:9 \
		"$work/snapsweep" serve >"$work/serve.log" 2>&1 &
	pid=$!
	until curl -sf -o /dev/null "http://127.0.0.1:$port/health"; do
		if ! kill -0 "$pid" 2>/dev/null; then
			cat "$work/serve.log" >&2
			exit 1
		fi
		sleep 0.005
	done
	t1=$(date +%s%N)
	starts+=($(((t1 - t0) / 1000000)))
	if [[ $i == "$runs" ]]; then
		sleep 5
		rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
	fi
	kill -TERM "$pid"
	wait "$pid" || true
done
sorted=$(printf '%s\n' "${starts[@]}" | sort -n | tr '\n' ' ')
median=$(printf '%s\n' "${starts[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')

cat <<MD
## Process (\`scripts/bench-process.sh\`)

| Figure | Value |
|---|---|
| Binary size (static, \`-trimpath -ldflags "-s -w"\`) | $((size / 1024 / 1024)) MiB ($size bytes) |
| Start to first \`/health\` 200, median of $runs | ${median} ms (all runs: ${sorted}ms) |
| Resident memory after 5 s idle | $((rss / 1024)) MiB |

Measured $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg).
MD
