#!/bin/sh
# webserver | daemon | all (both in one container, as `charmeta ui` does) | anything else: exec it.
set -eu
: "${DAGSTER_HOME:=/opt/dagster/home}"
mkdir -p "$DAGSTER_HOME"
[ -f "$DAGSTER_HOME/dagster.yaml" ] || cp /app/dagster.yaml "$DAGSTER_HOME/dagster.yaml"
PORT="${CHARMETA_UI_PORT:-3000}"
case "${1:-all}" in
  webserver) exec dagster-webserver -h 0.0.0.0 -p "$PORT" -w /app/workspace.yaml ;;
  daemon)    exec dagster-daemon run -w /app/workspace.yaml ;;
  all)
    dagster-daemon run -w /app/workspace.yaml &
    DAEMON=$!
    dagster-webserver -h 0.0.0.0 -p "$PORT" -w /app/workspace.yaml &
    WEB=$!
    trap 'kill -TERM "$WEB" "$DAEMON" 2>/dev/null' TERM INT
    # exit (and let the orchestrator restart us) as soon as either process stops
    while kill -0 "$WEB" 2>/dev/null && kill -0 "$DAEMON" 2>/dev/null; do sleep 2; done
    kill -TERM "$WEB" "$DAEMON" 2>/dev/null || true
    wait
    exit 1 ;;
  *) exec "$@" ;;
esac
