#!/usr/bin/env bash
# README's test command: set up what the tests need on a fresh machine, then run them all.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --release "$@"
