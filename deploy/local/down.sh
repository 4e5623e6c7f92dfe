#!/usr/bin/env bash
# Stop the local cluster that up.sh started, by the process ids it recorded, and remove its network namespace
# and veth pair. Nothing else is signalled: never `ray stop` (it kills every Ray on the machine), never a name.
# Usage: deploy/local/down.sh [--purge]   (--purge also deletes SPR_STATE: databases, artifacts, credentials)

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case ${1:-} in
  "") purge=false ;;
  --purge) purge=true ;;
  *) die "usage: down.sh [--purge]; got '$1'" ;;
esac
load_settings
derive
[[ $(id -u) == 0 ]] || die "down.sh needs root: it removes the worker's network namespace (run it as root, \
like up.sh)"
for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do stop "${SERVICES[i]}"; done
network_down
left=$(ls "$PIDS" 2>/dev/null || true)
[[ -z $left ]] || die "could not stop: $left"
if $purge; then rm -rf "$SPR_STATE"; log "removed $SPR_STATE"; fi
log "down"
