#!/usr/bin/env bash
# Install what quicmux needs from Debian 12's packages (only what is missing).
#   scripts/deps.sh          build dependencies
#   scripts/deps.sh --test   plus the real peers and tools the tests start
#   scripts/deps.sh --bench  plus what bench/longhaul.py needs: the --test set (v2ray,
#                            iperf3, iproute2) and Debian's matplotlib for the plots
#                            (it goes to /usr/bin/python3, which the benchmark calls)
set -euo pipefail

pkgs=(gcc make cmake pkg-config libngtcp2-dev libngtcp2-crypto-gnutls-dev
      libgnutls28-dev nettle-dev libev-dev libjansson-dev libc-ares-dev
      libcmocka-dev)
if [[ "${1:-}" == "--test" || "${1:-}" == "--bench" ]]; then
  pkgs+=(python3 v2ray shadowsocks-libev shadowsocks-v2ray-plugin iperf3
         iproute2 valgrind clang)
fi
if [[ "${1:-}" == "--bench" ]]; then
  pkgs+=(python3-matplotlib)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  # Debian's packages of the peers would start system services; we start our own.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi
