#!/usr/bin/env bash
# Start one Ray node with nationmap's security defaults and stay in the foreground (--block):
# token authentication on (RAY_AUTH_MODE=token) and the dashboard / job API on loopback only.
#
#   ray-node.sh head   [ray start options...]            e.g. --port 6379 --num-gpus 8
#   ray-node.sh worker HEAD_IP:PORT [ray start options...]
#
# Environment:
#   RAY_AUTH_TOKEN_PATH  token file (default ~/.ray/auth_token), readable by you only; create one
#                        with `ray get-auth-token --generate`. Every node must see the same token.
#   RAY_DASHBOARD_HOST   where the head serves the dashboard and job API (default 127.0.0.1;
#                        reach it through an SSH tunnel). Only set 0.0.0.0 behind a firewall.
set -euo pipefail
role=${1:-}
shift || true
export RAY_AUTH_MODE=token
export RAY_AUTH_TOKEN_PATH=${RAY_AUTH_TOKEN_PATH:-$HOME/.ray/auth_token}
if [ ! -s "$RAY_AUTH_TOKEN_PATH" ]; then
    echo "error: no Ray auth token at $RAY_AUTH_TOKEN_PATH (create one: ray get-auth-token --generate)" >&2
    exit 2
fi
if [ -n "$(find "$RAY_AUTH_TOKEN_PATH" -perm /077)" ]; then
    echo "error: $RAY_AUTH_TOKEN_PATH is readable by others; chmod 600 it" >&2
    exit 2
fi
RAY=${RAY:-ray}
case "$role" in
    head)
        exec "$RAY" start --head --dashboard-host "${RAY_DASHBOARD_HOST:-127.0.0.1}" \
            --disable-usage-stats --block "$@" ;;
    worker)
        address=${1:?usage: ray-node.sh worker HEAD_IP:PORT [options]}
        shift
        exec "$RAY" start --address "$address" --disable-usage-stats --block "$@" ;;
    *)
        echo "usage: ray-node.sh head|worker [HEAD_IP:PORT] [ray start options]" >&2
        exit 2 ;;
esac
