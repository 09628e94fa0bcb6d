#!/usr/bin/env bash
# Builds Sluice's release binaries into target/dist/: the control plane as
# `cargo build --release` does, and the data plane profile-guided: built once
# instrumented, run through a representative workload (sluice-pgo-train:
# ~60,000 requests of every kind against a mock upstream, about a minute),
# and built again with the profile it recorded, which lays out and inlines
# its request path for how it is used (README -> Performance: about a third
# less time per request inside the process). Takes ~10 minutes on 2 cores.
# Installs what is missing (protobuf-compiler; rustup's llvm-tools, whose
# llvm-profdata matches rustc's LLVM).
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib.sh
install_missing protoc:protobuf-compiler
profdata="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/llvm-profdata"
if [ ! -x "$profdata" ]; then
  echo "installing rustup's llvm-tools (llvm-profdata)"
  rustup component add llvm-tools
fi

target="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target"
target="$(cd "$target" && pwd)"
pgo="$target/pgo"
rm -rf "$pgo/profiles"
mkdir -p "$pgo/profiles" "$target/dist"

# The control plane as shipped; the trainer, and the (debug) control plane it starts.
cargo build --release -p sluice-control-plane --bin sluice-control-plane
cargo build -p sluice-control-plane --bin sluice-control-plane -p sluice-tests --bin sluice-pgo-train

# Separate target directories: other flags, so cargo would otherwise
# rebuild target/release's dependencies each time.
echo "building the instrumented data plane"
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-generate=$pgo/profiles" \
  cargo build --release -p sluice-data-plane --bin sluice-data-plane --target-dir "$pgo/generate"

echo "training it"
"$target/debug/sluice-pgo-train" "$pgo/generate/release/sluice-data-plane"
"$profdata" merge -o "$pgo/data-plane.profdata" "$pgo/profiles"

echo "building the profile-guided data plane"
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$pgo/data-plane.profdata" \
  cargo build --release -p sluice-data-plane --bin sluice-data-plane --target-dir "$pgo/use"

cp "$target/release/sluice-control-plane" "$pgo/use/release/sluice-data-plane" "$target/dist/"
echo "release binaries in $target/dist:"
ls -l "$target/dist"
