#!/bin/sh
# Install the edge agent as a systemd service on Debian / Raspberry Pi OS.
#
#   sudo deploy/install.sh                     install from this checkout
#   sudo deploy/install.sh --source DIR|WHEEL  install from another checkout or a built wheel
#   deploy/install.sh --dry-run                print every step, change nothing
#   deploy/install.sh --prefix /tmp/root       install below a directory (no user, no chown, no systemctl)
#
# Safe to run again (upgrade): the user, venv, config and env file are kept; the package and
# the unit are updated; a running service is restarted. See deploy/README.md.
set -eu

PROGRAM=$(basename "$0")
HERE=$(CDPATH='' cd -- "$(dirname -- "$0")" && pwd)
SOURCE=$(dirname -- "$HERE")
PREFIX=""
DRY_RUN=0
START=0
PYTHON=python3
PIP_ARGS=""
SERVICE_USER=edge-agent

usage() {
    cat <<EOF
usage: $PROGRAM [--source DIR|WHEEL] [--prefix DIR] [--dry-run] [--start]
                  [--python PYTHON] [--pip-args "ARGS"]

  --source DIR|WHEEL  the project to pip install (default: the checkout holding this script:
                      $SOURCE)
  --prefix DIR        install below DIR instead of /: no user is created, no ownership is
                      changed, systemctl is not called (for tests and image builds)
  --dry-run           print what would be done and change nothing
  --start             start (or restart) the service now; default: enable it only
  --python PYTHON     the interpreter the venv is made from (>= 3.11, default python3)
  --pip-args "ARGS"   extra pip install arguments, e.g. "--no-index --find-links /media/usb/wheels"
                      for a line PC without internet access
EOF
}

die() {
    echo "$PROGRAM: error: $*" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
        --source) [ $# -ge 2 ] || die "--source needs a value"; SOURCE=$2; shift 2 ;;
        --prefix) [ $# -ge 2 ] || die "--prefix needs a value"; PREFIX=$2; shift 2 ;;
        --python) [ $# -ge 2 ] || die "--python needs a value"; PYTHON=$2; shift 2 ;;
        --pip-args) [ $# -ge 2 ] || die "--pip-args needs a value"; PIP_ARGS=$2; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        --start) START=1; shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

case "$PREFIX" in
    "" | /*) ;;
    *) PREFIX=$(pwd)/$PREFIX ;;
esac
PREFIX=${PREFIX%/}

OPT=$PREFIX/opt/edge-agent
VENV=$OPT/venv
ETC=$PREFIX/etc/edge-agent
DATA=$PREFIX/var/lib/edge-agent
UNIT_DIR=$PREFIX/etc/systemd/system
UNIT=$UNIT_DIR/edge-agent.service

# Print a command, then run it unless this is a dry run.
run() {
    echo "+ $*"
    if [ "$DRY_RUN" -eq 0 ]; then
        "$@"
    fi
}

note() {
    echo "# $*"
}

# Owner and group only when installing into the real root as root.
owned() {
    if [ -z "$PREFIX" ]; then
        echo "-o $1 -g $2"
    fi
}

[ -e "$SOURCE" ] || die "--source $SOURCE does not exist"
[ -f "$HERE/systemd/edge-agent.service" ] || die "$HERE/systemd/edge-agent.service is missing"
if [ -z "$PREFIX" ] && [ "$DRY_RUN" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root (sudo $0 ...), or use --dry-run or --prefix DIR"
fi
if [ "$DRY_RUN" -eq 0 ]; then
    command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found. Fix: sudo apt-get install python3 python3-venv"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        die "$PYTHON is older than 3.11. Fix: use Debian 12 / Raspberry Pi OS bookworm or pass --python"
    "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null ||
        die "$PYTHON cannot make venvs. Fix: sudo apt-get install python3-venv"
fi

note "edge-agent install: source $SOURCE, root ${PREFIX:-/}$([ "$DRY_RUN" -eq 1 ] && echo ', dry run')"

# 1. The system user the service runs as.
if [ -n "$PREFIX" ]; then
    note "user $SERVICE_USER: skipped (--prefix)"
elif id "$SERVICE_USER" >/dev/null 2>&1; then
    note "user $SERVICE_USER: exists"
else
    run useradd --system --user-group --home-dir /var/lib/edge-agent --no-create-home \
        --shell /usr/sbin/nologin --comment "edge agent" "$SERVICE_USER"
fi

# 2. The venv and the package.
run install -d -m 0755 "$OPT"
if [ -x "$VENV/bin/python" ]; then
    note "venv $VENV: exists, upgrading the package"
else
    run "$PYTHON" -m venv "$VENV"
fi
# shellcheck disable=SC2086 # PIP_ARGS is a list of words on purpose
run "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade $PIP_ARGS "$SOURCE"
if [ -f "$SOURCE/README.md" ]; then
    run install -m 0644 "$SOURCE/README.md" "$OPT/README.md"
fi

# 3. Configuration: kept if present, modes enforced.
# shellcheck disable=SC2046 # owned prints zero or four words
run install -d -m 0750 $(owned root "$SERVICE_USER") "$ETC"
if [ -f "$ETC/config.yaml" ]; then
    note "config $ETC/config.yaml: exists, kept"
    # shellcheck disable=SC2046
    [ -z "$PREFIX" ] && run chown root:"$SERVICE_USER" "$ETC/config.yaml"
    run chmod 0640 "$ETC/config.yaml"
else
    EXAMPLE=$SOURCE/config.example.yaml
    [ -f "$EXAMPLE" ] || EXAMPLE=$(dirname -- "$HERE")/config.example.yaml
    [ -f "$EXAMPLE" ] || die "no config.example.yaml in $SOURCE or $(dirname -- "$HERE")"
    # shellcheck disable=SC2046
    run install -m 0640 $(owned root "$SERVICE_USER") "$EXAMPLE" "$ETC/config.yaml"
    note "config $ETC/config.yaml: the example; edit it (machines, broker) before starting"
fi
if [ -f "$ETC/env" ]; then
    note "env file $ETC/env: exists, kept"
    [ -z "$PREFIX" ] && run chown root:root "$ETC/env"
    run chmod 0600 "$ETC/env"
else
    # shellcheck disable=SC2046
    run install -m 0600 $(owned root root) /dev/null "$ETC/env"
    note "env file $ETC/env: empty; put secrets here as NAME=value (e.g. MQTT_PASSWORD=...)"
fi

# 4. State: outbox, learned models, alert state.
# shellcheck disable=SC2046
run install -d -m 0750 $(owned "$SERVICE_USER" "$SERVICE_USER") "$DATA"

# 5. The hardened unit.
run install -d -m 0755 "$UNIT_DIR"
if [ -f "$UNIT" ] && cmp -s "$HERE/systemd/edge-agent.service" "$UNIT"; then
    note "unit $UNIT: up to date"
else
    run install -m 0644 "$HERE/systemd/edge-agent.service" "$UNIT"
fi

if [ -n "$PREFIX" ]; then
    note "systemctl: skipped (--prefix)"
elif ! command -v systemctl >/dev/null 2>&1; then
    note "systemctl: not found, the unit is installed but not enabled"
else
    run systemctl daemon-reload
    run systemctl enable edge-agent.service
    if [ "$START" -eq 1 ] || systemctl is-active --quiet edge-agent.service 2>/dev/null; then
        run systemctl restart edge-agent.service
    else
        note "not started: edit $ETC/config.yaml, check it with"
        note "  $VENV/bin/edge-agent check-config $ETC/config.yaml"
        note "then: sudo systemctl start edge-agent && journalctl -u edge-agent -f"
    fi
fi
note "done"
