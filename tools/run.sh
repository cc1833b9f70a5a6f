#!/usr/bin/env bash
# Installs what building and running Ferry needs and nothing more (no test
# stack: tools/install-deps.sh run says which packages and why), builds Ferry
# (release) and runs it on its embedded default: a learning switch between the
# vhost-user server socket /run/ferry/vm0.sock and the host's TAP ferry0. It
# prints the QEMU options that attach a guest. Ctrl-C stops it and removes the
# socket and the TAP. Extra arguments go to `ferry run` (e.g. --port ...).
#
#   tools/run.sh [ferry run options]
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/lib/swift-toolchain.sh

tools/install-deps.sh run
ferry_use_swift run.sh
echo "run.sh: building ferry (release; the first build fetches the Swift dependencies and takes a few minutes)"
swift build -c release --product ferry
exec .build/release/ferry run "$@"
