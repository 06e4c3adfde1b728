#!/usr/bin/env bash
# Install Stressgrid on a machine image (or into a scratch directory).
#
#   provision.sh [options] ROLE
#
# ROLE is "coordinator", "generator" or "all" (both services on one host).
#
# What it does:
#   1. (system step) installs the runtime packages with apt and creates the
#      system user "stressgrid";
#   2. creates a virtualenv in /opt/stressgrid/venv and installs the project
#      there from a wheel (or from a source archive, which is then compiled);
#   3. installs the systemd unit(s), default env file(s), the sysctl file and
#      the login limits file from the files/ directory next to this script.
# Units are installed but not enabled: the instance's startup script writes
# the env file and then enables and starts the service.
#
# Options (each has an environment variable equivalent):
#   --root DIR       STRESSGRID_ROOT         write everything under DIR instead
#                                            of / (for tests and chroots)
#   --wheel PATH     STRESSGRID_WHEEL        the stressgrid wheel or source
#                                            archive, or a directory holding
#                                            exactly one of them
#   --files DIR      STRESSGRID_FILES        directory with the unit, env,
#                                            sysctl and limits files
#   --python EXE     STRESSGRID_PYTHON       interpreter for the venv (python3)
#   --skip-system    STRESSGRID_SKIP_SYSTEM=1
#                                            no apt, no user creation, no
#                                            sysctl or systemctl calls (the
#                                            file-writing steps only)
#   ROLE             STRESSGRID_ROLE
set -euo pipefail

die() {
    echo "provision.sh: $*" >&2
    exit 1
}

log() {
    echo "provision.sh: $*"
}

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//'
}

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

root="${STRESSGRID_ROOT:-}"
package="${STRESSGRID_WHEEL:-}"
files="${STRESSGRID_FILES:-$script_dir/../files}"
python="${STRESSGRID_PYTHON:-python3}"
skip_system="${STRESSGRID_SKIP_SYSTEM:-0}"
role="${STRESSGRID_ROLE:-}"

need_value() {
    if [ $# -lt 2 ] || [ -z "$2" ]; then
        die "option $1 needs a value"
    fi
}

while [ $# -gt 0 ]; do
    case "$1" in
    --root)
        need_value "$@"
        root="$2"
        shift 2
        ;;
    --root=*)
        root="${1#*=}"
        shift
        ;;
    --wheel)
        need_value "$@"
        package="$2"
        shift 2
        ;;
    --wheel=*)
        package="${1#*=}"
        shift
        ;;
    --files)
        need_value "$@"
        files="$2"
        shift 2
        ;;
    --files=*)
        files="${1#*=}"
        shift
        ;;
    --python)
        need_value "$@"
        python="$2"
        shift 2
        ;;
    --python=*)
        python="${1#*=}"
        shift
        ;;
    --skip-system)
        skip_system=1
        shift
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    -*)
        die "unknown option: $1 (see --help)"
        ;;
    *)
        role="$1"
        shift
        ;;
    esac
done

case "$role" in
coordinator) services=(coordinator) ;;
generator) services=(generator) ;;
all) services=(coordinator generator) ;;
"") die "missing ROLE: coordinator, generator or all (see --help)" ;;
*) die "unknown ROLE '$role': expected coordinator, generator or all" ;;
esac

case "$skip_system" in
1 | true | yes) skip_system=1 ;;
0 | false | no | "") skip_system=0 ;;
*) die "STRESSGRID_SKIP_SYSTEM must be 1 or 0, not '$skip_system'" ;;
esac

# "/" and "" both mean the real root; strip a trailing slash otherwise.
if [ "$root" = "/" ]; then
    root=""
fi
root="${root%/}"
if [ -n "$root" ]; then
    mkdir -p "$root"
    root="$(cd "$root" && pwd)"
    if [ "$skip_system" -eq 0 ]; then
        die "--root $root writes files only; add --skip-system (apt and useradd act on the real system)"
    fi
fi

[ -d "$files" ] || die "files directory not found: $files"
files="$(cd "$files" && pwd)"
for name in sysctl-stressgrid.conf limits-stressgrid.conf; do
    [ -f "$files/$name" ] || die "missing $files/$name"
done
for service in "${services[@]}"; do
    for name in "stressgrid-$service.service" "stressgrid-$service.env"; do
        [ -f "$files/$name" ] || die "missing $files/$name"
    done
done

# Resolve the package to install: a wheel, a source archive, or a directory
# that holds exactly one of them.
[ -n "$package" ] || die "no package given: use --wheel PATH or STRESSGRID_WHEEL"
if [ -d "$package" ]; then
    shopt -s nullglob
    candidates=("$package"/stressgrid-*.whl)
    if [ ${#candidates[@]} -eq 0 ]; then
        candidates=("$package"/stressgrid-*.tar.gz)
    fi
    shopt -u nullglob
    if [ ${#candidates[@]} -ne 1 ]; then
        die "expected exactly one stressgrid wheel or source archive in $package, found ${#candidates[@]}"
    fi
    package="${candidates[0]}"
fi
[ -f "$package" ] || die "package not found: $package"
case "$package" in
*.whl) from_source=0 ;;
*.tar.gz) from_source=1 ;;
*) die "not a wheel (.whl) or source archive (.tar.gz): $package" ;;
esac

prefix="$root/opt/stressgrid"
venv="$prefix/venv"

runtime_packages=(python3 python3-venv libnghttp2-14 ca-certificates)
# Needed only to compile the Cython extensions from a source archive; removed
# again once the package is installed.
build_packages=(gcc python3-dev libnghttp2-dev node-llhttp)

apt_get() {
    DEBIAN_FRONTEND=noninteractive apt-get -y -o DPkg::Lock::Timeout=600 "$@"
}

if [ "$skip_system" -eq 0 ]; then
    [ "$(id -u)" -eq 0 ] || die "the system step needs root (or pass --skip-system)"
    # On a freshly booted cloud image cloud-init may still be running apt.
    if command -v cloud-init >/dev/null 2>&1; then
        cloud-init status --wait >/dev/null 2>&1 || true
    fi
    log "installing runtime packages: ${runtime_packages[*]}"
    apt_get update
    apt_get install --no-install-recommends "${runtime_packages[@]}"
    if [ "$from_source" -eq 1 ]; then
        log "installing build packages: ${build_packages[*]}"
        apt_get install --no-install-recommends "${build_packages[@]}"
    fi
    if ! getent passwd stressgrid >/dev/null; then
        log "creating system user stressgrid"
        useradd --system --user-group --home-dir /var/lib/stressgrid \
            --no-create-home --shell /usr/sbin/nologin stressgrid
    fi
fi

log "creating virtualenv $venv"
mkdir -p "$prefix"
"$python" -m venv --clear "$venv"
export PIP_DISABLE_PIP_VERSION_CHECK=1
log "installing $(basename "$package")"
"$venv/bin/python" -m pip install --no-cache-dir --quiet "$package"
"$venv/bin/python" -I -c "import stressgrid, coordinator_app" ||
    die "the installed package does not provide stressgrid and coordinator_app"
"$venv/bin/python" -I -c 'import importlib.metadata as m; print(m.version("stressgrid"))' \
    >"$prefix/VERSION"
log "installed stressgrid $(cat "$prefix/VERSION")"

if [ "$skip_system" -eq 0 ] && [ "$from_source" -eq 1 ]; then
    log "removing build packages"
    apt_get purge --auto-remove "${build_packages[@]}"
fi

log "installing systemd units, env files, sysctl and limits files"
for service in "${services[@]}"; do
    install -D -m 0644 "$files/stressgrid-$service.service" \
        "$root/etc/systemd/system/stressgrid-$service.service"
    env_file="$root/etc/default/stressgrid-$service.env"
    # Never overwrite settings that are already there (a re-run, or a token).
    if [ ! -e "$env_file" ]; then
        # Root-only: the coordinator's file holds the management token;
        # systemd reads it before dropping privileges.
        install -D -m 0600 "$files/stressgrid-$service.env" "$env_file"
        if [ "$role" = all ] && [ "$service" = generator ]; then
            # Both on one host: the generator joins with the token the local
            # coordinator makes in its data directory on first start.
            echo "STRESSGRID_JOIN_TOKEN_FILE=/var/lib/stressgrid/join-token" >>"$env_file"
        fi
    fi
done
install -D -m 0644 "$files/sysctl-stressgrid.conf" "$root/etc/sysctl.d/90-stressgrid.conf"
install -D -m 0644 "$files/limits-stressgrid.conf" "$root/etc/security/limits.d/90-stressgrid.conf"

if [ "$skip_system" -eq 0 ]; then
    # Apply the kernel settings now: a key this kernel does not know fails
    # the image build here instead of being ignored at every boot.
    if [ -x /usr/lib/systemd/systemd-sysctl ]; then
        /usr/lib/systemd/systemd-sysctl /etc/sysctl.d/90-stressgrid.conf
    else
        sysctl -p /etc/sysctl.d/90-stressgrid.conf
    fi
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload
    fi
    apt_get clean
fi

log "done: role $role under ${root:-/}"
