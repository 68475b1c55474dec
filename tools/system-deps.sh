#!/usr/bin/env bash
# Installs the Debian libraries Qt's pip wheels need (see README): without
# libgl1 PySide6 fails to import, without fonts every character is a box.
# Extra package names may be passed as arguments (packaging adds Xvfb/xcb).
set -euo pipefail
pkgs=(libgl1 libegl1 libglib2.0-0 libfontconfig1 libfreetype6 libdbus-1-3 libxkbcommon0
      fonts-dejavu-core fontconfig-config "$@")
missing=()
for p in "${pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: not a Debian-like system; install these yourself: ${missing[*]}" >&2
    exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "system-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
