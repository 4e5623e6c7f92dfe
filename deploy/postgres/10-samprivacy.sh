#!/bin/bash
# PostgreSQL image entrypoint hook (in /docker-entrypoint-initdb.d): runs once, on an empty data folder, and
# creates the MLflow and Optuna roles and databases with the passwords from the pod's Secret-backed env.
set -euo pipefail
psql --username "$POSTGRES_USER" --dbname postgres -v mlflow_pw="$MLFLOW_DB_PASSWORD" \
  -v optuna_pw="$OPTUNA_DB_PASSWORD" -f "$(dirname "${BASH_SOURCE[0]}")/init.psql"
