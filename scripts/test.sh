#!/usr/bin/env bash
# The whole test suite: unit, property, storage-conformance and multi-process
# cluster tests, then a smoke run of the local-cluster demo.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --locked --all-targets
# The demo on a private home and port range, stopped at the end.
home=$(mktemp -d)
SGNODE_HOME=$home SGNODE_BASE_PORT=${DEMO_BASE_PORT:-27100} DEMO_STOP=1 scripts/demo.sh
rm -rf "$home"
