#!/usr/bin/env bash
# Stand-in for `nbdkit ... vddk ...` (VDDK cannot exist here). Records its argv and the
# password it was given, then serves $STANDIN_IMAGE with the real nbdkit file plugin on the
# socket and pidfile the launcher asked for, keeping the launcher's lifecycle flags.
set -euo pipefail
printf '%s\n' "$@" > "$STANDIN_RECORD"
socket= pidfile= password=
prev=
for a in "$@"; do
  case "$prev" in --unix) socket=$a ;; --pidfile) pidfile=$a ;; esac
  case "$a" in password=+*) password=${a#password=+} ;; esac
  prev=$a
done
[ -n "${STANDIN_FAIL:-}" ] && { echo "vddk: VixDiskLib_Open failed: NFC connection refused" >&2; exit 1; }
cp "$password" "$STANDIN_RECORD.password"
exec nbdkit --exit-with-parent --foreground --readonly --unix "$socket" --pidfile "$pidfile" file "$STANDIN_IMAGE"
