#!/usr/bin/env bash
# Installs the Debian 12 packages needed to build and test skillmeat.
# Skips apt entirely when every package is already installed.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libzip-dev libjansson-dev libssl-dev zlib1g-dev
  libsodium-dev libsecret-1-dev libcurl4-openssl-dev libssh2-1-dev
  git openssh-client openssl curl ca-certificates
  libcmocka-dev gnome-keyring dbus dbus-daemon libsecret-tools
  python3 zip unzip hyperfine time bsdutils jq strace
  openssh-server nginx fcgiwrap apache2-utils awscli rclone
)

missing=()
# The test servers from the npm registry need Node.js; Debian's will do
# when the machine has none of its own.
command -v npm >/dev/null || missing+=(nodejs npm)
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: run as root or install sudo" >&2; exit 1; }
  sudo="sudo"
fi
echo "install-deps: installing ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
