#!/usr/bin/env bash
# Installs the Debian packages vcbt's lab, tests and benchmarks need, if they are missing.
# Idempotent and quick when everything is present. Runs apt-get as root (directly, or via
# sudo when available). Packages:
#   golang-go, golang-github-vmware-govmomi-dev  build the vSphere lab (vcsim) in GOPATH mode
#   nbdkit, qemu-utils, libnbd-bin               real NBD servers and clients (nbdcopy, nbdinfo)
#   zstd, iproute2                               benchmark references
#   openssl, util-linux                          test certificates (NBD TLS); fallocate (hole punching)
#   chromium, fonts-dejavu-core                  the web console's end-to-end tests (playwright-core drives Debian's chromium)
#   python3-aiosmtpd                             a real SMTP server for the notification tests
set -euo pipefail

packages=(golang-go golang-github-vmware-govmomi-dev nbdkit qemu-utils libnbd-bin zstd iproute2 openssl util-linux chromium fonts-dejavu-core python3-aiosmtpd)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi
echo "system packages: installing ${missing[*]}"
run_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
export DEBIAN_FRONTEND=noninteractive
run_root apt-get update -q
run_root apt-get install -y -q --no-install-recommends "${missing[@]}"
