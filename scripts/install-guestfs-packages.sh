#!/usr/bin/env bash
# Installs the Debian packages `vcbt files` (file-level restore) and its tests need, if they are
# missing. Idempotent and quick when everything is present. Runs apt-get as root (directly, or
# via sudo when available). Packages:
#   libguestfs-tools, libguestfs-xfs   guestfish: reads guest file systems in a small appliance VM
#   linux-image-amd64                  the kernel the appliance boots (supermin builds it from the host)
#   xfsprogs                           XFS support inside the appliance and mkfs.xfs for test images
#   fdisk, dosfstools, mtools          test images without mounting: sfdisk, mkfs.vfat, mcopy
#   e2fsprogs                          mkfs.ext4 -d DIR (populated ext4 test images)
# Note: installing libguestfs removes Debian's `fuse` package (fuse3 replaces it).
set -euo pipefail

packages=(libguestfs-tools libguestfs-xfs linux-image-amd64 xfsprogs fdisk dosfstools mtools e2fsprogs btrfs-progs ntfs-3g lvm2)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "guestfs packages: all present"
  exit 0
fi
echo "guestfs packages: installing ${missing[*]}"
run_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
export DEBIAN_FRONTEND=noninteractive
run_root apt-get update -q
run_root apt-get install -y -q --no-install-recommends "${missing[@]}"
