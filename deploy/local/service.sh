#!/usr/bin/env bash
# Start, stop, restart or kill one service of the running local cluster. The failure drills use it, and so can
# you, e.g. to see a sweep survive a tracking-server restart.
# Usage: deploy/local/service.sh start|stop|restart|kill postgres|s3|mlflow|ray-head|ray-worker
#   kill = SIGKILL the service and every process it started (a lost machine); start brings it back.

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

(($# == 2)) || die "usage: service.sh start|stop|restart|kill SERVICE (one of ${SERVICES[*]})"
action=$1 name=$2
[[ " ${SERVICES[*]} " == *" $name "* ]] || die "unknown service '$name'; use one of ${SERVICES[*]}"
load_settings
derive
[[ $(id -u) == 0 ]] || die "service.sh needs root, like up.sh"
case $action in
  start) [[ -z $(recorded_pid "$name") ]] || die "$name is already running"; start_and_wait "$name" ;;
  stop) stop "$name" ;;
  restart) stop "$name"; start_and_wait "$name" ;;
  kill) crash_service "$name" ;;
  *) die "unknown action '$action'; use start, stop, restart or kill" ;;
esac
log "$action $name: done"
