#!/usr/bin/env bash
# scripts/build-tansu.sh: builds the tansu broker (a Kafka-protocol broker in Rust, from
# crates.io) once, into a cache outside the repository, for tests/kafka.rs and
# benches/kafka.sh. Its build takes 20-30 minutes on 2 cores, so it is skipped when the
# binary is already there: CI and developers build it once per machine.
#
#   scripts/build-tansu.sh            # -> ${PORTENT_CACHE:-$HOME/.cache/portent}/tansu/bin/tansu
#   PORTENT_TANSU=/path/to/tansu ...  # use that binary instead (nothing is built)
#
# Prints the path of the binary on standard output.
set -euo pipefail

VERSION=${TANSU_VERSION:-0.6.0}
if [ -n "${PORTENT_TANSU:-}" ]; then
    [ -x "$PORTENT_TANSU" ] || { echo "build-tansu: PORTENT_TANSU=$PORTENT_TANSU is not an executable" >&2; exit 1; }
    echo "$PORTENT_TANSU"
    exit 0
fi
root=${PORTENT_CACHE:-$HOME/.cache/portent}/tansu
bin=$root/bin/tansu
if [ -x "$bin" ]; then
    echo "$bin"
    exit 0
fi
mkdir -p "$root"
log=$root/build.log
echo "build-tansu: building tansu $VERSION into $root (20-30 minutes; log: $log)" >&2
# dynostore: the in-memory storage engine the tests use (memory://tansu/). Its own target
# directory, so that a failed build leaves nothing half-installed in bin/.
if ! nice cargo install tansu --version "$VERSION" --locked --features dynostore \
        --root "$root" --target-dir "$root/target" >"$log" 2>&1; then
    tail -20 "$log" >&2
    echo "build-tansu: the build failed; see $log" >&2
    exit 1
fi
rm -rf "$root/target"
echo "$bin"
