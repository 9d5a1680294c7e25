#!/usr/bin/env bash
# Install what quicmux needs from Debian 12's packages (only what is missing).
#   scripts/deps.sh          build dependencies
#   scripts/deps.sh --test   plus the real peers and tools the tests start
#   scripts/deps.sh --bench  plus what bench/longhaul.py needs: the --test set (v2ray,
#                            iperf3, iproute2) and Debian's matplotlib for the plots
#                            (it goes to /usr/bin/python3, which the benchmark calls)
#   scripts/deps.sh --deb    plus the Debian packaging tools scripts/build-deb.sh uses
#                            (dpkg-dev, debhelper, lintian, build-essential)
set -euo pipefail

pkgs=(gcc make cmake pkg-config libngtcp2-dev libngtcp2-crypto-gnutls-dev
      libgnutls28-dev nettle-dev libssl-dev libev-dev libjansson-dev
      libc-ares-dev libcmocka-dev)
if [[ "${1:-}" == "--test" || "${1:-}" == "--bench" ]]; then
  pkgs+=(python3 v2ray shadowsocks-libev shadowsocks-v2ray-plugin iperf3
         iproute2 valgrind clang prometheus tshark dnsmasq-base bind9-dnsutils)
fi
if [[ "${1:-}" == "--bench" ]]; then
  pkgs+=(python3-matplotlib)
fi
if [[ "${1:-}" == "--deb" ]]; then
  # Rules-Requires-Root: no, so no fakeroot; no devscripts (debuild is not used).
  pkgs+=(build-essential dpkg-dev debhelper lintian)
fi

# libngtcp2 >= 1.11 (SPEC §14): Debian 13 ships it; on Debian 12 it comes from
# bookworm-backports, pinned so that only the ngtcp2 packages are taken from
# there and everything else stays on bookworm.
setup_ngtcp2_backports() {
  local codename list pin
  codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
  [[ "$codename" == "bookworm" ]] || return 0
  list=/etc/apt/sources.list.d/quicmux-bookworm-backports.sources
  pin=/etc/apt/preferences.d/quicmux-ngtcp2
  if [[ -f "$pin" ]] && grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    return 0
  fi
  echo "deps: enabling bookworm-backports for libngtcp2 1.11 (only the ngtcp2 packages)"
  if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    $SUDO tee "$list" >/dev/null <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  fi
  $SUDO tee "$pin" >/dev/null <<'PIN'
Package: libngtcp2-dev libngtcp2-16 libngtcp2-crypto-gnutls-dev libngtcp2-crypto-gnutls8
Pin: release n=bookworm-backports
Pin-Priority: 500
PIN
  need_update=1
}

SUDO=""
[[ $(id -u) -ne 0 ]] && SUDO="sudo"
need_update=0
setup_ngtcp2_backports

ngtcp2_ok() {
  pkg-config --atleast-version=1.11 libngtcp2 2>/dev/null &&
    pkg-config --atleast-version=1.11 libngtcp2_crypto_gnutls 2>/dev/null
}

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$p")
done
# an installed libngtcp2 0.12 (Debian 12's own) is upgraded from backports
ngtcp2_ok || missing+=(libngtcp2-dev libngtcp2-crypto-gnutls-dev)
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  # Debian's packages of the peers would start system services; we start our own.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
elif ((need_update)); then
  $SUDO apt-get update -qq
fi
ngtcp2_ok || {
  echo "deps: libngtcp2 >= 1.11 with its GnuTLS helper is still missing" >&2
  exit 1
}
