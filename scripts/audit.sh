#!/usr/bin/env bash
# Dependency audit with cargo-deny (config: deny.toml): licenses, bans
# (duplicate versions, wildcards), sources, and RustSec advisories.
#
# bans, licenses and sources need only Cargo.lock and the crate sources, so
# they always run and fail the script on any error. Advisories need the
# RustSec database, fetched from GitHub: where GitHub cannot be reached (CI
# machines that see only package registries) they are skipped with a line
# saying so, never silently.
#
# Usage: scripts/audit.sh
#   AUDIT_FETCH_TIMEOUT  seconds allowed for fetching the database (default 120)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo-deny >/dev/null 2>&1; then
  echo "audit: installing cargo-deny"
  cargo install --locked cargo-deny
fi

checks=(bans licenses sources)
# `timeout` bounds a fetch that hangs instead of failing (a firewall that
# drops packets rather than refusing them).
if timeout "${AUDIT_FETCH_TIMEOUT:-120}" cargo deny fetch db; then
  checks=(advisories "${checks[@]}")
else
  echo "audit: advisory database unreachable, advisories not checked"
fi
# cargo-deny reads the metadata of every crate in Cargo.lock, those of other
# platforms too (windows-sys, ...), which a Linux build never downloads:
# fetch them all from the registry first.
cargo fetch --locked --quiet
# --offline: the database was fetched just above (or is not wanted), and
# every crate source is there now.
cargo deny --locked --offline check "${checks[@]}"
echo "audit: ok (${checks[*]})"
