#!/usr/bin/env bash
# Bring up a two-node samprivacy cluster on this machine, for trying the service and for its tests:
#   PostgreSQL (MLflow's backend store, MLflow's users, the Optuna study), an S3-compatible object store (rclone),
#   `mlflow server` with basic authentication serving artifacts from that store, and a Ray cluster with token
#   authentication: a head node here and a worker node in its own network namespace, joined by a veth pair.
# Usage (as root: it creates the network namespace; every service runs as SPR_USER):  deploy/local/up.sh
# Settings are environment variables (deploy/README.md lists them); state, logs and credentials go to SPR_STATE
# (default /var/tmp/samprivacy-local). deploy/local/down.sh stops exactly what this started.

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

resolve_settings  # checks every setting first: a mistake is reported before anything changes
[[ $(id -u) == 0 ]] || die "up.sh needs root: it creates a network namespace for the worker node (run it as root \
with the venv activated, e.g. in sudo -i); the services themselves run as the unprivileged SPR_USER"
if [[ -f $SETTINGS ]]; then
  (load_settings; derive; for s in "${SERVICES[@]}"; do
     [[ -z $(recorded_pid "$s") ]] || die "a local cluster is already up in $SPR_STATE ($s is running); stop it \
with: SPR_STATE=$SPR_STATE $HERE/down.sh"
   done)
fi
derive
preflight  # the name, the subnet and the ports are free: refused here, nothing has changed yet
ensure_user  # the one change before the checks end: a system user, left in place by down.sh
check_user_runs_the_venv

# From here on, on any failure stop exactly what this run started (the services it recorded, the network it
# made) and nothing else: a half-up cluster is worse than none, and another cluster's parts are not ours.
network_made=false
cleanup_failed_start() {
  log "startup failed; stopping what this run started"
  local i
  for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do stop "${SERVICES[i]}" || true; done
  if $network_made; then network_down; elif [[ $(claim_owner) == "$SPR_STATE" ]]; then rm -f "$CLAIM"; fi
}
trap 'status=$?; ((status == 0)) || cleanup_failed_start' EXIT

claim_name
write_settings
chmod 755 "$SPR_STATE"  # SPR_USER reaches its folders inside; settings and pids stay root's
mkdir -p "$PIDS"
user_dir 700 "$LOGS" "$SPR_STATE/home" "$SPR_STATE/tmp" "$SPR_STATE/ray"
user_dir 755 "$SHARED"  # trials and drivers write it; clients on this machine read the results

user_dir 700 "$SECRETS"
for name in ray_token pg_mlflow pg_optuna s3_access_key s3_secret_key mlflow_admin_password mlflow_password \
            mlflow_flask_secret; do
  [[ -s $SECRETS/$name ]] || secret_file "$name" "$(openssl rand -hex 24)"
done
secret_file pgpass "$HEAD_IP:$SPR_PG_PORT:*:mlflow:$(secret pg_mlflow)
$HEAD_IP:$SPR_PG_PORT:*:optuna:$(secret pg_optuna)"
secret_file ray_auth_header "Authorization: Bearer $(secret ray_token)"  # for curl -H @file

network_made=true  # set first: a failure halfway through `ip` still removes what it made
network_up
start_and_wait postgres
create_databases
start_and_wait s3
start_mlflow     # the slowest to start (database migrations): in parallel with Ray
start_and_wait ray-head
start_ray_worker
wait_service mlflow
create_mlflow_user
wait_service ray-worker

(umask 077; cat > "$SPR_STATE/cluster.env" <<ENV
# source this file to use the local cluster from a shell: samprivacy submit, ray job, mlflow clients, service.sh
export SPR_STATE=$SPR_STATE
export RAY_AUTH_MODE=token
export RAY_AUTH_TOKEN_PATH=$SECRETS/ray_token
export RAY_API_SERVER_ADDRESS=$DASHBOARD
export MLFLOW_TRACKING_URI=$MLFLOW_URI
export MLFLOW_TRACKING_USERNAME=sweeper
export MLFLOW_TRACKING_PASSWORD=$(secret mlflow_password)
export PGPASSFILE=$SECRETS/pgpass
export SPR_OPTUNA_URL=postgresql://optuna@$HEAD_IP:$SPR_PG_PORT/optuna
export SPR_SHARED=$SHARED
ENV
)
SPR_MLFLOW_URI=$MLFLOW_URI SPR_OPTUNA_URL=postgresql://optuna@$HEAD_IP:$SPR_PG_PORT/optuna SPR_SHARED=$SHARED \
  envsubst '${SPR_MLFLOW_URI} ${SPR_OPTUNA_URL} ${SPR_SHARED}' < "$HERE/quickstart.yaml" > "$SPR_STATE/quickstart.yaml"

trap - EXIT
cat <<EOF
samprivacy local cluster is up (state, logs and credentials in $SPR_STATE)
  running as      $SPR_USER (root holds only the network namespace and veth pair)
  Ray dashboard   $DASHBOARD   token in $SECRETS/ray_token (curl -H @$SECRETS/ray_auth_header)
  Ray nodes       head $HEAD_IP ($SPR_HEAD_CPUS CPU), worker $WORKER_IP ($SPR_WORKER_CPUS CPU, network namespace $NETNS)
  MLflow UI       $MLFLOW_URI   user sweeper, password in $SECRETS/mlflow_password
                  (admin password in $SECRETS/mlflow_admin_password)
  Optuna storage  postgresql://optuna@$HEAD_IP:$SPR_PG_PORT/optuna   password in $SECRETS/pgpass
  object store    $S3_ENDPOINT   bucket mlflow; keys in $SECRETS/s3_access_key and s3_secret_key
  shared storage  $SHARED   (Tune storage and sweep workdirs)
Submit the example sweep:
  source $SPR_STATE/cluster.env
  samprivacy submit $SPR_STATE/quickstart.yaml --follow
Stop everything:
  SPR_STATE=$SPR_STATE $HERE/down.sh
EOF
