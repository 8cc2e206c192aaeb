#!/usr/bin/env bash
# scripts/build-pgo.sh: a profile-guided build of portent for a sensor that replays or
# captures a lot. An instrumented build replays a training capture (and the bundled and shared
# captures), and the release build is then optimised with the counts it took: which branches
# are hot, what to inline, how to lay the code out. The results are the same; only the speed
# changes (benches/RESULTS.md, session 11: typically 5-10% less worker CPU on the 1 GB bench
# capture, 1-14% across sets of runs).
#
#   scripts/build-pgo.sh                    # -> target/pgo/release/portent (6-9 min on 2 cores)
#   TRAIN_MB=250 TRAIN_SEED=2 scripts/build-pgo.sh
#
# The plain `cargo build --release` binary stays where it is; benches/replay.sh measures the
# PGO one beside it when it is there. The training capture comes from gen_capture with a seed
# other than the benchmark's (1), so the benchmark does not time the binary on the packets it
# was trained on. Needs llvm-profdata from rustc's own LLVM (the `llvm-tools` rustup component,
# added if missing). Before it ends, the script checks that the PGO binary writes byte for byte
# the alerts and DNS log the plain build writes, on the training capture and every bundled one.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TRAIN_MB=${TRAIN_MB:-250}
TRAIN_SEED=${TRAIN_SEED:-2}
SHARED=${SHARED:-$ROOT/../shared/captures/public}
GEN_DIR=$ROOT/target/pgo-gen
OUT_DIR=$ROOT/target/pgo
WORK=$(mktemp -d /tmp/portent-pgo.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

say() { printf 'build-pgo: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

SYSROOT=$(rustc --print sysroot)
HOST=$(rustc -vV | awk '/^host:/ {print $2}')
PROFDATA=$SYSROOT/lib/rustlib/$HOST/bin/llvm-profdata
if [[ ! -x $PROFDATA ]]; then
    say "adding the llvm-tools component (llvm-profdata must match rustc's LLVM)"
    rustup component add llvm-tools >&2 || true
fi
[[ -x $PROFDATA ]] || die "no $PROFDATA; run 'rustup component add llvm-tools' (Debian's llvm-profdata is another LLVM and cannot read rustc's profiles)"

cd "$ROOT"
say "building the plain release binary and gen_capture"
cargo build --release --bin portent --example gen_capture
PLAIN=$ROOT/target/release/portent
"$ROOT/target/release/examples/gen_capture" --out "$WORK/train.pcap" --size-mb "$TRAIN_MB" --seed "$TRAIN_SEED"

say "building the instrumented binary ($GEN_DIR)"
rm -rf "$GEN_DIR/profiles"
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-generate=$GEN_DIR/profiles" \
    cargo build --release --bin portent --target-dir "$GEN_DIR"
INSTR=$GEN_DIR/release/portent

# The training runs: the replay the benchmark times (both thread counts), once with the DNS
# log, then every bundled and shared capture once, for the paths an edge mix never takes
# (IPv6, VLAN stacks, fragments, tunnels, malformed files).
say "training on $WORK/train.pcap (~$TRAIN_MB MB, seed $TRAIN_SEED) and the captures"
"$INSTR" replay -q --threads 1 -a "$WORK/a.ndjson" "$WORK/train.pcap"
"$INSTR" replay -q --threads 2 -a "$WORK/a.ndjson" "$WORK/train.pcap"
"$INSTR" replay -q --threads 2 -a "$WORK/a.ndjson" --dns-log "$WORK/d.ndjson" "$WORK/train.pcap"
shopt -s nullglob
others=("$ROOT"/captures/*.pcap)
[[ -d $SHARED ]] && others+=("$SHARED"/*.pcap "$SHARED"/*.pcapng)
trained=0
for f in "${others[@]}"; do
    # Malformed and cut files are part of the training; their exit status is not.
    "$INSTR" replay -q -a "$WORK/a.ndjson" --dns-log "$WORK/d.ndjson" "$f" >/dev/null 2>&1 || true
    trained=$((trained + 1))
done
say "trained on $trained captures besides the generated one"

mkdir -p "$OUT_DIR"
"$PROFDATA" merge -o "$WORK/portent.profdata" "$GEN_DIR/profiles"
# Named by its contents: cargo rebuilds when RUSTFLAGS change but does not look inside the
# file, so a new profile under an old name would leave crates built with the old one.
PROFILE=$OUT_DIR/portent-$(sha256sum "$WORK/portent.profdata" | cut -c1-16).profdata
rm -f "$OUT_DIR"/portent-*.profdata
mv "$WORK/portent.profdata" "$PROFILE"

say "building the optimised binary ($OUT_DIR, profile $(basename "$PROFILE"))"
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$PROFILE" \
    cargo build --release --bin portent --target-dir "$OUT_DIR"
PGO=$OUT_DIR/release/portent

say "checking that it writes what the plain build writes"
for f in "$WORK/train.pcap" "$ROOT"/captures/*.pcap; do
    for t in 1 2; do
        "$PLAIN" replay -q --threads $t -a "$WORK/plain-a" --dns-log "$WORK/plain-d" "$f"
        "$PGO" replay -q --threads $t -a "$WORK/pgo-a" --dns-log "$WORK/pgo-d" "$f"
        cmp -s "$WORK/plain-a" "$WORK/pgo-a" || die "alerts differ on $f (--threads $t)"
        cmp -s "$WORK/plain-d" "$WORK/pgo-d" || die "DNS log differs on $f (--threads $t)"
    done
done
# What it was built from, for benches/replay.sh to print beside its rows.
echo "$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo +dirty)" \
    >"$OUT_DIR/COMMIT"
say "done: $PGO (from $(cat "$OUT_DIR/COMMIT"))"
