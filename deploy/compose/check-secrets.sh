#!/bin/sh
# Entrypoint wrapper of every compose service: refuses to start while a secret file is empty or
# still holds the placeholder shipped in deploy/secrets.example/, then runs the service's own
# command. A stack started with the example secrets would be open to anyone who read them here.
#
#   check-secrets.sh COMMAND [ARG...]
#
# SECRETS_DIR (default /run/secrets, where compose mounts a service's secrets) is the folder
# checked; every file in it must hold a real value.
set -eu
dir=${SECRETS_DIR:-/run/secrets}
placeholder=change-me
failed=0
for file in "$dir"/*; do
    [ -f "$file" ] || continue
    name=$(basename "$file")
    if [ ! -r "$file" ]; then
        echo "error: secret '$name' is not readable by uid $(id -u) in this container." \
            "Fix: chmod 644 deploy/secrets/$name (the folder stays 0700)" >&2
        failed=1
        continue
    fi
    value=$(cat "$file")
    if [ -z "$value" ]; then
        echo "error: secret '$name' is empty. Fix: write a value into deploy/secrets/$name (see deploy/README.md)" >&2
        failed=1
    elif [ "${value#*"$placeholder"}" != "$value" ]; then
        echo "error: secret '$name' still holds the shipped placeholder '$placeholder'." \
            "Fix: put a real value in deploy/secrets/$name, e.g." \
            "python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > deploy/secrets/$name" >&2
        failed=1
    fi
done
if [ "$failed" -ne 0 ]; then
    echo "error: refusing to start with placeholder or empty secrets" >&2
    exit 78 # EX_CONFIG: compose shows it as the exit code of the service
fi
exec "$@"
