#!/usr/bin/env bash
# Runs every test Ferry has, from a clean clone on a fresh Debian machine:
#
#   tools/test.sh
#
# 1. installs what is missing for building and running Ferry and for its
#    tests (tools/install-deps.sh test: QEMU, DPDK's testpmd, a guest kernel,
#    busybox, tcpdump, pytest; it names each package before installing it),
#    then, before anything is built, checks the module graph
#    (tools/check-module-graph: Package.swift's edges, what each target
#    imports and docs/ARCHITECTURE.md agree) and where Unsafe may appear
#    (tools/check-unsafe: docs/ARCHITECTURE.md's raw-memory list), and builds the test guest, Ferry
#    (release, the Swift runtime linked statically) and the Debian package (tools/package.sh);
# 2. unit tests (swift test): codec, rings, hostile guests, allocation probe;
# 3. the fuzz targets (tools/fuzz.sh), each for a short bounded time;
# 4. integration tests (pytest, Tests/Integration) against real peers:
#    dpdk-testpmd's virtio-user front-end and QEMU guests, run as root; the
#    package installed into a root with no Swift toolchain (test_package.py);
# 5. a short soak (tools/soak.py): two front-ends forwarding while ports, FDB entries and
#    connections churn; every frame reconciled, memory and descriptors back at baseline.
# A test that cannot run (no root, no QEMU, no testpmd) fails with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/lib/swift-toolchain.sh

tools/install-deps.sh test
ferry_use_swift test.sh
echo "== module graph (python3 and the toolchain are there now)"
tools/check-module-graph
echo "== unsafe only in the files that own raw memory"
tools/check-unsafe
tools/build-test-guest.sh

# The release build is the one the Debian package ships (Swift runtime linked in), so the
# integration tests run exactly that binary and tools/package.sh below finds it up to date.
# (SwiftPM compiles every module again when --static-swift-stdlib changes: one build, not two.)
echo "== build (release, Swift runtime static: for the integration tests and the package)"
swift build -c release --static-swift-stdlib --product ferry
export FERRY_BIN="$PWD/.build/release/ferry"
echo "== Debian package (Tests/Integration/test_package.py installs it)"
tools/package.sh --output .build
export FERRY_DEB="$PWD/.build/ferry_$("$FERRY_BIN" --version)_$(dpkg --print-architecture).deb"

echo "== unit tests"
swift test 2>&1 | tee /tmp/ferry-unit-tests.log
echo "== fuzz targets"
tools/fuzz.sh --seconds "${FERRY_CI_FUZZ_SECONDS:-20}"
echo "== integration tests"
python3 -m pytest -v -p no:cacheprovider Tests/Integration
echo "== soak"
python3 tools/soak.py --seconds "${FERRY_CI_SOAK_SECONDS:-60}"
