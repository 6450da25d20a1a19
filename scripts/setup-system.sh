#!/usr/bin/env bash
# System set-up for kumoflow on Debian: packages and services.
#
# Idempotent and quick when there is nothing to do:
#   1. installs the packages listed in scripts/system-packages.txt (plus
#      python3-venv when $PYTHON cannot make a venv), running `apt-get update`
#      and `apt-get install` only when something is missing;
#   2. starts Open vSwitch (ovsdb-server + ovs-vswitchd) unless it already
#      runs, and checks it by creating and deleting a throwaway bridge with
#      the userspace datapath (datapath_type=netdev; no kernel module needed).
#
# Needs root (or passwordless sudo) only when it has something to change.
# Environment: PYTHON (default python3), SKIP_OVS=1 to leave services alone.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PACKAGE_LIST="${PACKAGE_LIST:-$here/system-packages.txt}"
PYTHON="${PYTHON:-python3}"
OVS_CTL=/usr/share/openvswitch/scripts/ovs-ctl
export DEBIAN_FRONTEND=noninteractive

log() { printf 'setup-system: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

truthy() { case "${1,,}" in 1|true|yes|on) return 0 ;; *) return 1 ;; esac; }
strict() { truthy "${CI:-}" || truthy "${KUMOFLOW_STRICT:-}"; }

can_root() {
    [ "$(id -u)" -eq 0 ] || { command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; }
}

# Without root, a developer can still run the tests that need nothing (the
# rest skip); in CI (CI=true) that is an error.
no_root() {
    strict && die "$1, which needs root; run as root (or with passwordless sudo)"
    log "warning: $1, which needs root; continuing without it (tests needing it will skip)"
}

# Run a command as root: directly when root, else through non-interactive
# sudo when that works, else unprivileged (callers check can_root first
# where root is essential).
as_root() {
    if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo -n "$@"
    else
        "$@"
    fi
}

package_installed() {
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

missing_packages() {
    local pkg cmd rest
    while read -r pkg cmd rest; do
        case "$pkg" in ''|'#'*) continue ;; esac
        case "$cmd" in '#'*) cmd= ;; esac
        if [ -n "$cmd" ]; then
            command -v "$cmd" >/dev/null 2>&1 || echo "$pkg"
        else
            package_installed "$pkg" || echo "$pkg"
        fi
    done <"$PACKAGE_LIST"
    # The venv needs the venv and ensurepip modules; Debian splits them off.
    if command -v "$PYTHON" >/dev/null 2>&1; then
        "$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || echo python3-venv
    else
        echo python3 python3-venv
    fi
}

ensure_packages() {
    local missing
    missing="$(missing_packages | tr '\n' ' ')"
    missing="${missing% }"
    if [ -z "$missing" ]; then
        log "system packages present"
        return
    fi
    can_root || { no_root "missing packages: $missing"; return 0; }
    log "installing: $missing"
    # tshark asks whether non-root users may capture; answer no, silently.
    echo 'wireshark-common wireshark-common/install-setuid boolean false' \
        | as_root debconf-set-selections
    local apt=(apt-get -o DPkg::Lock::Timeout=600 -o Dpkg::Use-Pty=0)
    as_root "${apt[@]}" update -q
    # shellcheck disable=SC2086
    as_root env DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -q $missing
    missing="$(missing_packages | tr '\n' ' ')"
    [ -z "${missing% }" ] || die "still missing after apt-get install: $missing"
}

ovs_up() {
    as_root ovs-vsctl --timeout=5 show >/dev/null 2>&1 \
        && as_root ovs-appctl --timeout=5 -t ovs-vswitchd version >/dev/null 2>&1
}

# Create and delete a bridge on the userspace datapath: proves ovs-vswitchd
# really works, not only that ovsdb-server answers.
ovs_probe() {
    local br="kfprobe$$" out old
    # Remove probe bridges left by a run that was killed midway.
    for old in $(as_root ovs-vsctl --timeout=10 list-br | grep -E '^kfprobe[0-9]+$' || true); do
        kill -0 "${old#kfprobe}" 2>/dev/null \
            || as_root ovs-vsctl --timeout=10 --if-exists del-br "$old"
    done
    if ! out="$(as_root ovs-vsctl --timeout=10 add-br "$br" \
            -- set bridge "$br" datapath_type=netdev 2>&1)"; then
        as_root ovs-vsctl --timeout=10 --if-exists del-br "$br" || true
        die "Open vSwitch cannot create a netdev bridge: $out"
    fi
    local err
    err="$(as_root ovs-vsctl --timeout=10 get interface "$br" error 2>&1 || true)"
    as_root ovs-vsctl --timeout=10 --if-exists del-br "$br"
    case "$err" in
        '[]'|'') ;;
        *) die "Open vSwitch netdev bridge has an error: $err" ;;
    esac
}

ensure_ovs() {
    [ "${SKIP_OVS:-}" = 1 ] && { log "SKIP_OVS=1: leaving Open vSwitch alone"; return; }
    if [ ! -x "$OVS_CTL" ]; then
        strict || can_root || { no_root "Open vSwitch is not installed"; return 0; }
        die "$OVS_CTL not found (is openvswitch-switch installed?)"
    fi
    if ovs_up; then
        log "Open vSwitch running"
    else
        can_root || { no_root "Open vSwitch is not reachable"; return 0; }
        log "starting Open vSwitch"
        # No systemd here; ovs-ctl starts only the daemons not yet running and
        # skips the kernel module when the kernel has none (userspace datapath).
        as_root "$OVS_CTL" start --system-id=random >&2 \
            || die "ovs-ctl start failed; see /var/log/openvswitch/*.log"
        local i
        for i in $(seq 1 50); do
            ovs_up && break
            sleep 0.2
        done
        ovs_up || die "Open vSwitch did not come up; see /var/log/openvswitch/*.log"
    fi
    ovs_probe
    log "Open vSwitch userspace datapath OK"
}

ensure_packages
ensure_ovs
