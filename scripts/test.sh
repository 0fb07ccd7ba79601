#!/usr/bin/env bash
# The whole test suite: unit, property, storage-conformance, multi-process
# cluster and artifact/runner tests, then a smoke run of the local-cluster demo.
set -euo pipefail
cd "$(dirname "$0")/.."
# The Luigi runner's tests need a Python with Luigi (made on first use).
if [ -z "${SGNODE_TEST_PYTHON:-}" ]; then
  SGNODE_TEST_PYTHON=$(scripts/python-env.sh)
  export SGNODE_TEST_PYTHON
fi
# --lib --tests: the binary has no unit tests; --all-targets would still
# build and link an empty test harness for it.
cargo test --locked --lib --tests
# The demo on a private home and port range, stopped at the end.
home=$(mktemp -d)
SGNODE_HOME=$home SGNODE_BASE_PORT=${DEMO_BASE_PORT:-27100} DEMO_STOP=1 scripts/demo.sh
rm -rf "$home"
