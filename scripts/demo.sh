#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: install, build, and run a quicmux
# server and client on loopback with the embedded defaults, pushing data
# through and printing what happened. Extra arguments go to `quicmux demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh
exec build/quicmux demo "$@"
