#!/usr/bin/env bash
# Lossless drain, repeated: 20 SIGTERM drains (LB_DRAINS to change), each under
# 32 keep-alive clients sending back to back; prints each drain's answered and
# lost requests and fails on any loss. Debug build, loopback only.
#   benches/drain.sh [DRAINS]
set -euo pipefail
cd "$(dirname "$0")/.."
LB_DRAINS=${1:-20} cargo test -q --test limits sigterm_under_keep_alive_load_loses_no_request \
    -- --nocapture 2>&1 | grep -E '^drain [0-9]+:|test result|panicked'
