#!/usr/bin/env bash
# The one test command (`make test`, and so CI's .ci/run): starts the
# Firestore and Pub/Sub emulators once for every package, checks Terraform
# formatting, vets, runs every test with the race detector, and, once
# ./cmd/snapsweep exists, checks that the binary built as the Dockerfile
# builds it runs as non-root and answers /health. Fails if an emulator cannot
# start: no test is skipped for want of one.
#
# Optional arguments are package patterns (default ./...); a run of chosen
# packages skips the container check.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/emulators.sh
. scripts/emulators.sh
trap emulators_stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
# Trapped, not ignored (children keep the default): bash reporting a killed
# child on a closed pipe would otherwise die of SIGPIPE before the EXIT trap.
trap 'exit 141' PIPE

# This run must not skip emulator tests, whatever the caller's shell says.
unset SNAPSWEEP_SKIP_EMULATORS

packages=("$@")
((${#packages[@]})) || packages=(./...)

step() { printf '\n==> %s\n' "$*"; }

step "start emulators"
# They boot (a few seconds of JVM start) while formatting and vet run.
emulators_launch

step "terraform fmt -check -recursive terraform"
if command -v terraform >/dev/null 2>&1; then
	# fmt reads no CLI configuration; spare the warning about a missing one.
	if [[ -n "${TF_CLI_CONFIG_FILE:-}" && ! -e "$TF_CLI_CONFIG_FILE" ]]; then
		unset TF_CLI_CONFIG_FILE
	fi
	terraform fmt -check -recursive -diff terraform
else
	echo "WARNING: terraform is not on PATH: Terraform formatting NOT checked"
fi

step "go vet ${packages[*]}"
go vet "${packages[@]}"

step "wait for emulators"
emulators_wait

step "go test -race ${packages[*]}"
go test -race -count=1 -timeout 20m "${packages[@]}"

step "container check (non-root binary answers /health)"
if (($# > 0)); then
	echo "skipped: a run of chosen packages"
elif [[ -d cmd/snapsweep ]] && go list ./cmd/snapsweep >/dev/null 2>&1; then
	scripts/container-check.sh
else
	echo "skipped: ./cmd/snapsweep does not exist yet"
fi

step "all checks passed"
