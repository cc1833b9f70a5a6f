#!/usr/bin/env bash
# Installs what is missing, builds Ferry (release) and runs it on its
# embedded default: two vhost-user server sockets, /run/ferry/vm0.sock and
# /run/ferry/vm1.sock, cross-connected. It prints the QEMU options that attach
# a guest to each. Extra arguments go to `ferry run` (e.g. --port ...).
#
#   tools/run.sh [ferry run options]
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install-deps.sh
swift build -c release --product ferry
exec .build/release/ferry run "$@"
