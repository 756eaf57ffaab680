#!/bin/sh
# One-shot service of deploy/compose.yaml: gives Grafana a token that can only READ the bucket
# and the ingest bridge one that can only WRITE it, so neither holds InfluxDB's all-access admin
# token (which stays with InfluxDB and this script). InfluxDB chooses token values itself, so
# they are made here, after InfluxDB is up, and handed over in a volume per consumer:
#
#   $TOKENS_DIR/read/token   (volume influx-read-token, mounted only into grafana)
#   $TOKENS_DIR/write/token  (volume influx-write-token, mounted only into ingest)
#
# A token that exists is kept, so restarts do not pile up tokens; delete the volume (or the
# file) and start the stack again to rotate one. Needs: INFLUX_HOST, INFLUX_ORG, INFLUX_BUCKET,
# the admin token in the secret file ADMIN_TOKEN_FILE, and READ_UID / WRITE_UID (the users
# Grafana and the agent image run as) to own the files.
set -eu
tokens=${TOKENS_DIR:-/tokens}
INFLUX_TOKEN=$(cat "${ADMIN_TOKEN_FILE:-/run/secrets/influx-admin-token}")
export INFLUX_TOKEN INFLUX_HOST INFLUX_ORG # read by the influx CLI; nothing on its command line

bucket_id=$(influx bucket list --name "$INFLUX_BUCKET" --hide-headers | cut -f1)
if [ -z "$bucket_id" ]; then
    echo "error: bucket '$INFLUX_BUCKET' not found in org '$INFLUX_ORG'" >&2
    exit 1
fi

# make_token KIND OWNER_UID FLAG DESCRIPTION
make_token() {
    file="$tokens/$1/token"
    if [ -s "$file" ]; then
        echo "scoped-tokens: $1 token kept ($file)"
        return
    fi
    token=$(influx auth create --org "$INFLUX_ORG" "$3" "$bucket_id" --description "$4" --hide-headers | cut -f3)
    if [ -z "$token" ]; then
        echo "error: InfluxDB made no $1 token" >&2
        exit 1
    fi
    (umask 077 && printf '%s\n' "$token" >"$file.new")
    chown "$2" "$file.new"
    chmod 0400 "$file.new"
    mv "$file.new" "$file"
    echo "scoped-tokens: $1 token made ($file)"
}

make_token read "${READ_UID:-472}" --read-bucket "grafana: read $INFLUX_BUCKET"
make_token write "${WRITE_UID:-10001}" --write-bucket "ingest bridge: write $INFLUX_BUCKET"
