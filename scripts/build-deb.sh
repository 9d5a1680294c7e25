#!/usr/bin/env bash
# Build the Debian packages (quicmux, libquicmux2, libquicmux-dev) and check
# them with lintian.
#   scripts/build-deb.sh [OUTDIR]     default OUTDIR: build-deb/ in the source tree
# Installs what is missing first (scripts/deps.sh --deb, then the rest of
# debian/control's Build-Depends through apt-get build-dep).
#
# The build runs on a copy of the source tree in a temporary directory (the
# files git tracks plus untracked ones it does not ignore, as they are in the
# work tree; outside a git checkout: everything but build*/), because
# dpkg-buildpackage writes into the parent of the source directory and leaves
# obj-*/ and debian/<package>/ behind. OUTDIR then holds the .deb files, the
# .changes and .buildinfo, build.log and lintian.txt; it is emptied first.
#
# Fails if the build fails, if debian/changelog's version is not the project
# VERSION of CMakeLists.txt, or if lintian reports an error (warnings and
# informational tags are printed and kept in lintian.txt).
# DEB_BUILD_OPTIONS passes through (e.g. nocheck: no unit tests in the build).
set -euo pipefail
cd "$(dirname "$0")/.."
src=$(pwd)
out=${1:-build-deb}
mkdir -p "$out"
out=$(cd "$out" && pwd)

scripts/deps.sh --deb

version=$(dpkg-parsechangelog -S Version)
upstream=$(sed -nE 's/^project\(quicmux VERSION ([0-9.]+).*/\1/p' CMakeLists.txt)
if [[ "$version" != "$upstream" ]]; then
  echo "build-deb: debian/changelog says $version, CMakeLists.txt says $upstream:" \
       "add a changelog entry (dch -v $upstream, or edit debian/changelog)" >&2
  exit 1
fi

tmp=$(mktemp -d /tmp/quicmux-deb.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
tree="$tmp/quicmux-$version"
mkdir "$tree"
if git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  # tracked (less deleted ones) + untracked-but-not-ignored files, as they are now
  git ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do
      [[ -e "$f" || -L "$f" ]] && printf '%s\0' "$f"
    done | tar --null -T - -cf - | tar -xf - -C "$tree"
else
  tar --exclude='./build*' --exclude='./obj-*' -cf - . | tar -xf - -C "$tree"
fi

# Build-Depends not yet installed (e.g. python3 on a minimal system)
if ! (cd "$tree" && dpkg-checkbuilddeps >/dev/null 2>&1); then
  SUDO=""
  [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  echo "build-deb: installing the missing Build-Depends"
  (cd "$tree" && DEBIAN_FRONTEND=noninteractive $SUDO apt-get build-dep -y -qq \
     --no-install-recommends ./ >/dev/null)
fi

find "$out" -mindepth 1 -maxdepth 1 \( -name '*.deb' -o -name '*.changes' \
  -o -name '*.buildinfo' -o -name build.log -o -name lintian.txt \) -delete

echo "build-deb: building quicmux $version in $tree (log: $out/build.log)"
t0=$(date +%s)
if ! (cd "$tree" && dpkg-buildpackage -us -uc -b -j"$(nproc)") >"$out/build.log" 2>&1; then
  tail -n 40 "$out/build.log" >&2
  echo "build-deb: dpkg-buildpackage failed (full log: $out/build.log)" >&2
  exit 1
fi
echo "build-deb: built in $(( $(date +%s) - t0 )) s"
mv "$tmp"/*.deb "$tmp"/*.changes "$tmp"/*.buildinfo "$out"/

changes=$(ls "$out"/*.changes)
echo "build-deb: lintian $(basename "$changes")"
# Exit status 2 = lintian itself failed; 1 = a tag at or above --fail-on.
set +e
lintian --info --display-info --fail-on error "$changes" >"$out/lintian.txt" 2>&1
rc=$?
set -e
grep -E '^[EWIP]: ' "$out/lintian.txt" || true
errors=$(grep -c '^E: ' "$out/lintian.txt" || true)
warnings=$(grep -c '^W: ' "$out/lintian.txt" || true)
echo "build-deb: lintian: $errors errors, $warnings warnings (details: $out/lintian.txt)"
if ((rc != 0 || errors > 0)); then
  [[ $rc -ne 1 ]] && cat "$out/lintian.txt" >&2
  echo "build-deb: lintian failed" >&2
  exit 1
fi
ls -1 "$out"/*.deb
