#!/usr/bin/env bash
# Installs the Debian packages `npm run bench` needs (the peers vcbt is measured against), if
# they are missing. Idempotent and quick when everything is present. Runs apt-get as root
# (directly, or via sudo when not root), with `apt-get update` first when installing.
# Packages:
#   restic, borgbackup          backup peers (full, incremental, restore)
#   time                        GNU time (/usr/bin/time -v): peak RSS of every contender
#   nbdkit, libnbd-bin          NBD server and nbdcopy (replicate peer); also in the main setup
#   qemu-utils                  qemu-img convert (replicate peer); also in the main setup
#   zstd                        `zstd -1` (compression reference); also in the main setup
#   coreutils                   cp, sync, sha256sum
set -euo pipefail

packages=(restic borgbackup time nbdkit libnbd-bin qemu-utils zstd coreutils)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "bench packages: all present"
  exit 0
fi
echo "bench packages: installing ${missing[*]}"
run_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
export DEBIAN_FRONTEND=noninteractive
run_root apt-get update -q
run_root apt-get install -y -q --no-install-recommends "${missing[@]}"
