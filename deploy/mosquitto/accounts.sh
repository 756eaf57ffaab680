#!/bin/sh
# Builds Mosquitto's password file from the account secrets, then runs the broker.
#
#   accounts.sh COMMAND [ARG...]
#
# Every secret file mqtt-<user> in SECRETS_DIR (default /run/secrets) becomes the account <user>
# with that file's content as password: the agent reads the same file, so broker and client can
# never disagree, and no hashed password file has to be made by hand. What each account may
# do is in acl.example. PASSWORD_FILE (default /mosquitto/config/passwd) is where
# mosquitto.conf's password_file points; it is rebuilt at every start, so removing a secret
# removes the account.
set -eu
dir=${SECRETS_DIR:-/run/secrets}
password_file=${PASSWORD_FILE:-/mosquitto/config/passwd}
new="$password_file.new"
(umask 077 && : >"$new")
accounts=0
for file in "$dir"/mqtt-*; do
    [ -f "$file" ] || continue
    user=${file##*/mqtt-}
    mosquitto_passwd -b "$new" "$user" "$(cat "$file")"
    accounts=$((accounts + 1))
done
if [ "$accounts" -eq 0 ]; then
    echo "error: no broker accounts: no secret file $dir/mqtt-<user>. Fix: see deploy/README.md" >&2
    rm -f "$new"
    exit 78
fi
# Mosquitto drops to its own user before it reads the file.
if [ "$(id -u)" -eq 0 ] && id mosquitto >/dev/null 2>&1; then chown mosquitto:mosquitto "$new"; fi
mv "$new" "$password_file"
echo "accounts.sh: $accounts broker accounts in $password_file"
exec "$@"
