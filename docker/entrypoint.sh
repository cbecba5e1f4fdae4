#!/bin/sh
# charmeta container entrypoint.
#   code-server | webserver | daemon       one Dagster process (docker compose / Kubernetes)
#   ray-head | ray-worker                   a Ray node for the partition pool (CHARMETA_EXECUTOR=ray)
#   all                                     webserver + daemon in one container (SQLite, one host)
#   anything else                           exec'd as is (e.g. `charmeta run --source ... --output ...`)
# Secrets: for each NAME in the list below, NAME_FILE (a Docker/Kubernetes secret file) sets NAME.
set -eu
for name in DAGSTER_PG_PASSWORD AWS_SECRET_ACCESS_KEY AWS_ACCESS_KEY_ID HF_TOKEN; do
  eval "file=\${${name}_FILE:-}"
  if [ -n "$file" ]; then
    [ -r "$file" ] || { echo "charmeta-entrypoint: ${name}_FILE=$file is not readable" >&2; exit 2; }
    eval "export $name=\"\$(cat \"\$file\")\""
  fi
done
: "${DAGSTER_HOME:=/opt/dagster/home}"
mkdir -p "$DAGSTER_HOME"
# CHARMETA_INSTANCE=postgres (compose, Kubernetes) uses the deployment instance; default: SQLite
if [ ! -f "$DAGSTER_HOME/dagster.yaml" ]; then
  if [ "${CHARMETA_INSTANCE:-sqlite}" = "postgres" ]; then
    cp /app/deploy/dagster.yaml "$DAGSTER_HOME/dagster.yaml"
  else
    cp /app/dagster.yaml "$DAGSTER_HOME/dagster.yaml"
  fi
fi
WORKSPACE="${CHARMETA_WORKSPACE:-/app/workspace.yaml}"
PORT="${CHARMETA_UI_PORT:-3000}"
case "${1:-all}" in
  code-server)
    exec dagster code-server start -h 0.0.0.0 -p "${CHARMETA_GRPC_PORT:-4000}" -m charmeta_dagster.definitions ;;
  webserver) exec dagster-webserver -h 0.0.0.0 -p "$PORT" -w "$WORKSPACE" ;;
  daemon)    exec dagster-daemon run -w "$WORKSPACE" ;;
  ray-head)
    exec ray start --head --block --port "${RAY_PORT:-6379}" --include-dashboard=false \
      --num-cpus "${RAY_NUM_CPUS:-$(nproc)}" --disable-usage-stats ;;
  ray-worker)
    exec ray start --block --address "${CHARMETA_RAY_ADDRESS:?set CHARMETA_RAY_ADDRESS=host:port}" \
      --num-cpus "${RAY_NUM_CPUS:-$(nproc)}" --disable-usage-stats ;;
  all)
    dagster-daemon run -w "$WORKSPACE" &
    DAEMON=$!
    dagster-webserver -h 0.0.0.0 -p "$PORT" -w "$WORKSPACE" &
    WEB=$!
    trap 'kill -TERM "$WEB" "$DAEMON" 2>/dev/null' TERM INT
    # exit (and let the orchestrator restart us) as soon as either process stops
    while kill -0 "$WEB" 2>/dev/null && kill -0 "$DAEMON" 2>/dev/null; do sleep 2; done
    kill -TERM "$WEB" "$DAEMON" 2>/dev/null || true
    wait
    exit 1 ;;
  *) exec "$@" ;;
esac
