# Shared set-up for scripts/demo and scripts/test: a venv in .venv with the project installed.
# Sourced, not run. Works on a fresh Debian / Raspberry Pi OS with Python 3.11+.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@";
    elif command -v sudo >/dev/null 2>&1; then sudo "$@";
    else echo "error: '$*' needs root; run it as root or install sudo" >&2; return 1; fi
}

APT_UPDATED=0
apt_install() {
    # apt_install PACKAGE... : install Debian packages that are not installed yet.
    local missing=()
    for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: please install these packages with your system's package manager: ${missing[*]}" >&2
        return 1
    fi
    echo "==> installing Debian packages: ${missing[*]}"
    if [ "$APT_UPDATED" -eq 0 ]; then as_root apt-get update -qq; APT_UPDATED=1; fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_python() {
    if ! command -v "$PYTHON" >/dev/null 2>&1; then apt_install python3 python3-venv; fi
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        echo "error: Python 3.11 or newer is needed; $("$PYTHON" --version) found. Set PYTHON=/path/to/python3.11" >&2
        exit 2
    fi
}

ensure_venv() {
    # ensure_venv EXTRAS : create .venv and install the project with those extras, once per pyproject change.
    local extras="$1" stamp=".venv/.installed-$1"
    ensure_python
    if [ ! -x .venv/bin/python ]; then
        if ! "$PYTHON" -m venv .venv 2>/dev/null; then
            rm -rf .venv
            apt_install python3-venv
            "$PYTHON" -m venv .venv
        fi
    fi
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        echo "==> installing the project and its dependencies into .venv (first run takes a few minutes)"
        .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
        .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[$extras]"
        touch "$stamp"
    fi
}
