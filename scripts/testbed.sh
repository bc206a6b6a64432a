#!/usr/bin/env bash
# bgeimg test bed: a real Docker engine, a local registry used as the Docker Hub
# mirror, qemu arm64 emulation, and stand-in base images, on Debian bookworm x86_64
# without systemd (see docs: DESIGN.md "The test environment").
#
#   scripts/testbed.sh up [--arch amd64|arm64]... [--modern] [--verify]
#                                      start what the caller needs (idempotent; seconds when cached):
#                                      the registry mirror, Docker 20.10 and the stand-in images for the
#                                      architectures asked for (default: amd64 and arm64); --modern also
#                                      Docker 26 + buildx + the containerd image store as a second daemon
#   scripts/testbed.sh verify          full proof: pull/run, arm64 builds (classic + BuildKit)
#   scripts/testbed.sh status          exit 0 when dockerd, registry, binfmt and images are all up
#   scripts/testbed.sh down            stop both dockerds and the registry, keep the cache
#   scripts/testbed.sh env             export lines for tests: eval "$(scripts/testbed.sh env)"
#
# The second daemon (Docker 26, `--modern`): trixie's docker.io/docker-cli 26.1.5, containerd 1.7.24 and
# docker-buildx 0.13.1, fetched with `apt-get download` through a private apt state (the system's sources,
# preferences and installed packages are untouched) and unpacked with `dpkg -x` into $CACHE/docker26/root;
# bookworm's runc stays (trixie's needs glibc 2.38). It has its own socket (/var/run/bgeimg-docker26.sock),
# data-root, exec-root (its own containerd), pidfile and bridge (br-bgeimg26, with FORWARD and MASQUERADE
# rules of its own since it runs with --iptables=false beside the first), the containerd image store, and the
# same registry mirror. The buildx plugin lives only in $CACHE/docker26/config/cli-plugins (a DOCKER_CONFIG),
# so `--engine auto` with the default /usr/bin/docker and ~/.docker stays buildkit on Docker 20.10.
#
# arm64 emulation: trixie's static qemu-aarch64 (QEMU 10, from its qemu-user .deb, cached in $CACHE/qemu) is
# registered in binfmt_misc with the F and P flags whenever `up` prepares arm64; bookworm's QEMU 7.2 crashes in
# onnxruntime's aarch64 wheel.
#
# Environment:
#   BGEIMG_TESTBED_CACHE   cache dir (default /var/cache/bgeimg-testbed): rootfs tarballs,
#                          registry storage, logs, pid files
#   BGEIMG_REGISTRY_PORT   registry port on 127.0.0.1 (default 5000)
#   BGEIMG_DOCKERD_STORAGE_DRIVER  force a storage driver (default: dockerd's choice, vfs fallback)
#   BGEIMG_TESTBED_NO_APT=1        never run apt-get (fail instead)
#   BGEIMG_TESTBED_ARCHES          default architectures of `up` (default "amd64 arm64")
#   BGEIMG_TESTBED_MODERN=1        same as `up --modern`
#   BGEIMG_DOCKER26_SUBNET         the second daemon's bridge address (default 172.30.0.1/24)
#   (up --modern also unpacks cosign and nginx into $CACHE/tools for the release tests; `env` exports their paths)
#   BGEIMG_TESTBED_MIN_FREE_GB     below this much free disk (default 25), `up` removes what earlier test runs
#                                  left in the engine and trims its build cache to BGEIMG_TESTBED_BUILD_CACHE (10GB)
set -euo pipefail

CACHE="${BGEIMG_TESTBED_CACHE:-/var/cache/bgeimg-testbed}"
PORT="${BGEIMG_REGISTRY_PORT:-5000}"
REG="127.0.0.1:${PORT}"
DOCKER=/usr/bin/docker            # Debian's 20.10 client (has BuildKit); NOT /usr/local/bin/docker
DOCKER_SOCK=/var/run/docker.sock
MIRROR="debian http://deb.debian.org/debian"
MIRROR_URL=http://deb.debian.org/debian
SUITE=bookworm
INCLUDE=python3,python3-venv,python-is-python3,ca-certificates
ALL_ARCHES=(amd64 arm64)
read -r -a ARCHES <<<"${BGEIMG_TESTBED_ARCHES:-${ALL_ARCHES[*]}}"  # what this `up` prepares (--arch)
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
IMAGES_PY="$SCRIPT_DIR/testbed_images.py"
ROOTFS_DIR="$CACHE/rootfs"
LOG_DIR="$CACHE/logs"
RUN_DIR="$CACHE/run"
REG_PID="$RUN_DIR/registry.pid"
DOCKERD_PID="$RUN_DIR/dockerd.pid"
# The second daemon: Docker 26 with the containerd image store and buildx
D26_DIR="$CACHE/docker26"
D26_ROOT="$D26_DIR/root"              # the unpacked .debs
D26_DOCKER="$D26_ROOT/usr/bin/docker"  # its client (26.1.5)
D26_CONFIG="$D26_DIR/config"          # a DOCKER_CONFIG holding cli-plugins/docker-buildx
D26_SOCK=/var/run/bgeimg-docker26.sock
D26_EXEC=/var/run/bgeimg-docker26
D26_PID="$RUN_DIR/dockerd26.pid"
D26_BRIDGE=br-bgeimg26
D26_SUBNET="${BGEIMG_DOCKER26_SUBNET:-172.30.0.1/24}"
# package -> the upstream version wanted (trixie's; a point release may bump the Debian revision)
D26_PKGS=(docker.io=26.1.5 docker-cli=26.1.5 containerd=1.7.24 docker-buildx=0.13.1 tini=0.19.0)
BINFMT_DIR=/proc/sys/fs/binfmt_misc
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH"
export DOCKER_HOST="unix://$DOCKER_SOCK"

T0=$(date +%s)
say() { printf 'testbed: %s\n' "$*" >&2; }
die() { printf 'testbed: ERROR: %s\n' "$*" >&2; exit 1; }
elapsed() { echo "$(( $(date +%s) - T0 ))s"; }

# ---------------------------------------------------------------- helpers

# pid_alive PIDFILE NAME -> 0 when the pid in PIDFILE is a live process called NAME
pid_alive() {
    local f=$1 name=$2 pid
    [[ -s $f ]] || return 1
    pid=$(<"$f")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/comm ]] || return 1
    [[ $(<"/proc/$pid/comm") == "$name"* ]]
}

http_ok() { python3 - "$1" <<'EOF'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=3) as r:
        sys.exit(0 if r.status == 200 else 1)
except Exception:
    sys.exit(1)
EOF
}

registry_answers() { http_ok "http://$REG/v2/"; }
docker_answers() { timeout 10 "$DOCKER" info >/dev/null 2>&1; }

# stop_pid PIDFILE NAME: TERM, wait, KILL
stop_pid() {
    local f=$1 name=$2 pid i
    if pid_alive "$f" "$name"; then
        pid=$(<"$f")
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 1 60); do
            [[ -d /proc/$pid ]] || break
            sleep 0.5
        done
        if [[ -d /proc/$pid ]]; then
            say "$name ($pid) did not stop, killing"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$f"
}

trim_log() { # keep logs from growing without bound across sessions
    local f=$1
    if [[ -f $f && $(stat -c %s "$f") -gt 50000000 ]]; then
        tail -c 5000000 "$f" >"$f.tmp" && mv "$f.tmp" "$f"
    fi
}

# ---------------------------------------------------------------- packages

need_pkgs() {
    local missing=()
    [[ -x /usr/sbin/dockerd && -x /usr/bin/docker ]] || missing+=(docker.io)
    [[ -x /usr/bin/docker-registry ]] || missing+=(docker-registry)
    [[ -x /usr/bin/qemu-aarch64-static ]] || missing+=(qemu-user-static)
    [[ -x /usr/sbin/update-binfmts ]] || missing+=(binfmt-support)
    [[ -x /usr/sbin/debootstrap ]] || missing+=(debootstrap)
    command -v python3 >/dev/null || missing+=(python3)
    command -v iptables >/dev/null || missing+=(iptables)
    command -v strip >/dev/null || missing+=(binutils)  # tests check analyze --advise's symbol sizes against strip
    if ((${#missing[@]})); then
        [[ ${BGEIMG_TESTBED_NO_APT:-0} == 1 ]] && die "missing packages: ${missing[*]}"
        say "installing ${missing[*]} (apt-get, log: $LOG_DIR/apt.log)"
        # keep the packages' init scripts from starting a dockerd/registry of their own
        # (without our mirror flags / on our port): policy-rc.d 101 = "action forbidden"
        local own_policy=0
        if [[ ! -e /usr/sbin/policy-rc.d ]]; then
            printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && own_policy=1
        fi
        {
            apt-get update &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y \
                docker.io docker-registry qemu-user-static binfmt-support debootstrap \
                python3 iptables ca-certificates binutils
        } >>"$LOG_DIR/apt.log" 2>&1 || {
            if ((own_policy)); then rm -f /usr/sbin/policy-rc.d; fi
            tail -20 "$LOG_DIR/apt.log" >&2; die "apt-get failed"; }
        if ((own_policy)); then rm -f /usr/sbin/policy-rc.d; fi
        # Debian's docker-registry package may start its own registry via init scripts
        # on port 5000; we run ours with our config, so stop a packaged one if present.
        if [[ -x /etc/init.d/docker-registry ]]; then
            /etc/init.d/docker-registry stop >/dev/null 2>&1 || true
        fi
    fi
}

# ---------------------------------------------------------------- release tools (optional)
# cosign (Debian 13 only) and nginx, unpacked into the cache with `apt-get download` + `dpkg -x`: nothing on the
# system is installed or upgraded, and a private apt directory per suite leaves the system's sources alone.
TOOLS_DIR="$CACHE/tools"
COSIGN_BIN="$TOOLS_DIR/root/usr/bin/cosign"
NGINX_BIN="$TOOLS_DIR/root/usr/sbin/nginx"

# fetch_deb SUITE PACKAGE: download PACKAGE from Debian's SUITE into $TOOLS_DIR/debs and unpack it into root/
fetch_deb() {
    local suite=$1 pkg=$2 apt="$TOOLS_DIR/apt-$1" opts
    mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/parts" "$TOOLS_DIR/debs" "$TOOLS_DIR/root"
    echo "deb $MIRROR_URL $suite main" >"$apt/sources.list"
    opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o "Dir::Etc::SourceParts=$apt/parts"
          -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o Debug::NoLocking=1)
    [[ -n $(ls "$apt/lists" 2>/dev/null | grep Packages) ]] || apt-get "${opts[@]}" update || return 1
    (cd "$TOOLS_DIR/debs" && apt-get "${opts[@]}" download "$pkg") || return 1
    dpkg -x "$(ls -t "$TOOLS_DIR/debs/${pkg}_"*.deb | head -1)" "$TOOLS_DIR/root"
}

ensure_release_tools() { # for the release tests (sign/verify, canary nginx -t); a failure here only warns
    local log="$LOG_DIR/tools.log"
    if [[ ${BGEIMG_TESTBED_NO_APT:-0} == 1 ]]; then
        [[ -x $COSIGN_BIN && -x $NGINX_BIN ]] || say "warning: BGEIMG_TESTBED_NO_APT=1: cosign/nginx not fetched"
        return 0
    fi
    [[ -x $COSIGN_BIN ]] || { say "fetching cosign from trixie (log: $log)"; fetch_deb trixie cosign >>"$log" 2>&1; } ||
        say "warning: cosign unavailable (log: $log): the signing tests will fail"
    [[ -x $NGINX_BIN ]] || { say "fetching nginx (log: $log)"; fetch_deb "$SUITE" nginx >>"$log" 2>&1; } ||
        say "warning: nginx unavailable (log: $log): the canary tests will fail"
    # skopeo: an OCI client that is not bgeimg, to read the bundles it writes (bookworm's 1.9 is enough)
    command -v skopeo >/dev/null || { say "installing skopeo (log: $log)";
        { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y skopeo; } >>"$log" 2>&1; } ||
        say "warning: skopeo unavailable (log: $log): the bundle interoperability test will fail"
}

# ---------------------------------------------------------------- binfmt
# arm64 runs under trixie's qemu-aarch64 (QEMU 10): bookworm's 7.2 segfaults on `import onnxruntime` (the 1.32
# aarch64 wheel), 10 runs it, and torch and everything else the suite emulates. The static binary is taken from
# trixie's qemu-user .deb (apt-get download through the private trixie apt state, nothing installed) into the
# cache, and registered directly; `up --arch amd64` alone leaves whatever emulation the machine has.
QEMU_DIR="$CACHE/qemu"
QEMU_BIN="$QEMU_DIR/bin/qemu-aarch64"
QEMU_VERSION=10.0  # the upstream version wanted (trixie's; a point release may bump the rest)

want_arm64() { [[ " ${ARCHES[*]} " == *" arm64 "* ]]; }

binfmt_ok() { # [INTERPRETER]: registered, enabled, with the F flag (and that interpreter)
    [[ -f $BINFMT_DIR/qemu-aarch64 ]] || return 1
    grep -q '^enabled' "$BINFMT_DIR/qemu-aarch64" || return 1
    grep -q '^flags:.*F' "$BINFMT_DIR/qemu-aarch64" || return 1
    [[ -z ${1:-} ]] || grep -qx "interpreter $1" "$BINFMT_DIR/qemu-aarch64" || return 1
    return 0
}

ensure_qemu() { # trixie's static qemu-aarch64 in $QEMU_BIN (the .deb cached in $QEMU_DIR/debs)
    [[ -x $QEMU_BIN ]] && "$QEMU_BIN" --version 2>/dev/null | grep -q "version $QEMU_VERSION" && return 0
    local debs="$QEMU_DIR/debs" deb
    mkdir -p "$debs" "$QEMU_DIR/bin"
    if ! compgen -G "$debs/qemu-user_*.deb" >/dev/null; then
        [[ ${BGEIMG_TESTBED_NO_APT:-0} == 1 ]] && die "trixie's qemu-user not cached in $debs"
        say "fetching trixie's qemu-user (apt-get download, log: $LOG_DIR/apt.log)"
        { trixie_apt update && (cd "$debs" && trixie_apt download qemu-user); } >>"$LOG_DIR/apt.log" 2>&1 ||
            { tail -20 "$LOG_DIR/apt.log" >&2; die "apt-get download of trixie's qemu-user failed"; }
    fi
    deb=$(compgen -G "$debs/qemu-user_*.deb" | sort -V | tail -1)
    [[ $(dpkg-deb -f "$deb" Version) == *":$QEMU_VERSION"* ]] ||
        die "$deb is version $(dpkg-deb -f "$deb" Version), not $QEMU_VERSION (remove it to fetch again)"
    dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/bin/qemu-aarch64 >"$QEMU_BIN.tmp" &&
        chmod 755 "$QEMU_BIN.tmp" && mv "$QEMU_BIN.tmp" "$QEMU_BIN" || die "cannot unpack qemu-aarch64 from $deb"
}

register_binfmt() { # INTERPRETER: F (the kernel opens it now, so it works inside containers), P (argv0 kept)
    [[ -f $BINFMT_DIR/qemu-aarch64 ]] && { echo -1 >"$BINFMT_DIR/qemu-aarch64" || true; }
    printf '%s' ':qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:'"$1"':FP' \
        >"$BINFMT_DIR/register" 2>>"$LOG_DIR/binfmt.log" || true
}

ensure_binfmt() {
    if ! mountpoint -q "$BINFMT_DIR" 2>/dev/null; then
        mount -t binfmt_misc binfmt_misc "$BINFMT_DIR" 2>/dev/null ||
            die "cannot mount binfmt_misc at $BINFMT_DIR (kernel without binfmt_misc or no privilege): arm64 emulation impossible here"
    fi
    if want_arm64; then
        ensure_qemu
        binfmt_ok "$QEMU_BIN" && return 0
        say "registering trixie's qemu-aarch64 ($("$QEMU_BIN" --version | head -1)) for arm64"
        register_binfmt "$QEMU_BIN"
        binfmt_ok "$QEMU_BIN" ||
            die "aarch64 binfmt_misc entry for $QEMU_BIN could not be registered with the F flag (see $LOG_DIR/binfmt.log)"
        return 0
    fi
    if ! binfmt_ok; then
        if [[ -f $BINFMT_DIR/qemu-aarch64 ]]; then
            # registered but disabled or without the F flag: re-register
            echo -1 >"$BINFMT_DIR/qemu-aarch64" 2>/dev/null || true
        fi
        update-binfmts --enable qemu-aarch64 >>"$LOG_DIR/binfmt.log" 2>&1 || true
    fi
    if ! binfmt_ok; then
        local interp=/usr/bin/qemu-aarch64-static
        [[ -x $interp ]] || die "no $interp"
        register_binfmt "$interp"
    fi
    binfmt_ok || die "aarch64 binfmt_misc entry could not be registered with the F flag (see $LOG_DIR/binfmt.log)"
}

# ---------------------------------------------------------------- registry

write_registry_config() {
    mkdir -p "$CACHE/registry"
    cat >"$CACHE/registry.yml.tmp" <<EOF
# written by scripts/testbed.sh
version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $CACHE/registry
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: $REG
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: false
EOF
    mv "$CACHE/registry.yml.tmp" "$CACHE/registry.yml"
}

ensure_registry() {
    if pid_alive "$REG_PID" docker-registry && registry_answers; then
        return 0
    fi
    rm -f "$REG_PID"
    if registry_answers; then
        die "something else already answers on http://$REG/v2/ (not our registry; set BGEIMG_REGISTRY_PORT or stop it)"
    fi
    write_registry_config
    trim_log "$LOG_DIR/registry.log"
    say "starting registry on $REG (log: $LOG_DIR/registry.log)"
    setsid nohup /usr/bin/docker-registry serve "$CACHE/registry.yml" \
        >>"$LOG_DIR/registry.log" 2>&1 </dev/null &
    echo $! >"$REG_PID"
    local i
    for i in $(seq 1 60); do
        registry_answers && return 0
        pid_alive "$REG_PID" docker-registry || break
        sleep 0.25
    done
    tail -20 "$LOG_DIR/registry.log" >&2
    die "registry did not answer on http://$REG/v2/"
}

# ---------------------------------------------------------------- dockerd

cleanup_stale_docker() {
    # only called when no dockerd answers: remove what a killed session left behind
    local f m
    for f in /var/run/docker.pid /var/run/docker/containerd/containerd.pid; do
        if [[ -s $f ]]; then
            local p; p=$(<"$f")
            if [[ $p =~ ^[0-9]+$ && -d /proc/$p ]]; then
                local comm; comm=$(</proc/$p/comm)
                # only a dockerd, or the containerd dockerd itself spawned (its config under /var/run/docker)
                [[ $comm == containerd ]] && ! tr '\0' ' ' </proc/$p/cmdline | grep -q '/var/run/docker/containerd' && comm=other
                case $comm in
                    dockerd|containerd)
                        say "killing leftover $comm ($p) that does not answer"
                        kill -KILL "$p" 2>/dev/null || true; sleep 1 ;;
                esac
            fi
        fi
    done
    rm -f /var/run/docker.pid /var/run/docker/containerd/containerd.pid "$DOCKER_SOCK"
    rm -f /var/run/docker/containerd/*.sock /var/run/docker/containerd/*.sock.ttrpc 2>/dev/null || true
    # leftover mounts of killed containers (netns, shm, overlay merged dirs)
    while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done < <(awk '{print $2}' /proc/mounts | grep -E '^(/var/run/docker/netns/|/run/docker/netns/|/var/lib/docker/(overlay2|containers|vfs)/)' | sort -r)
}

pick_mtu() { # match the default route's interface MTU (eth0 is 1400 here; docker0 defaults to 1500)
    local dev mtu
    dev=$(ip -o route show default 2>/dev/null | awk '{for(i=1;i<NF;i++) if($i=="dev"){print $(i+1); exit}}')
    [[ -n $dev && -r /sys/class/net/$dev/mtu ]] && mtu=$(<"/sys/class/net/$dev/mtu")
    echo "${mtu:-1500}"
}

start_dockerd() {
    local driver=${1:-} mtu args
    mtu=$(pick_mtu)
    # own (empty) config file so a stray /etc/docker/daemon.json cannot conflict with our flags
    [[ -f $CACHE/daemon.json ]] || echo '{}' >"$CACHE/daemon.json"
    args=(
        --config-file "$CACHE/daemon.json"
        -H "unix://$DOCKER_SOCK"
        --pidfile /var/run/docker.pid
        --registry-mirror "http://$REG"
        --insecure-registry "$REG"
        --insecure-registry "localhost:$PORT"
        --mtu "$mtu"
    )
    [[ -n $driver ]] && args+=(--storage-driver "$driver")
    if ! iptables -t nat -L -n >/dev/null 2>&1; then
        if iptables-legacy -t nat -L -n >/dev/null 2>&1; then
            say "iptables-nft unusable, switching alternatives to iptables-legacy"
            update-alternatives --set iptables /usr/sbin/iptables-legacy >/dev/null
            update-alternatives --set ip6tables /usr/sbin/ip6tables-legacy >/dev/null 2>&1 || true
        else
            say "WARNING: no working iptables nat table: --iptables=false, containers get no outbound NAT (use --network host)"
            args+=(--iptables=false --ip-masq=false)
        fi
    fi
    echo "=== $(date -u +%FT%TZ) dockerd ${args[*]}" >>"$LOG_DIR/dockerd.log"
    setsid nohup /usr/sbin/dockerd "${args[@]}" >>"$LOG_DIR/dockerd.log" 2>&1 </dev/null &
    echo $! >"$DOCKERD_PID"
    local i
    for i in $(seq 1 120); do
        docker_answers && return 0
        pid_alive "$DOCKERD_PID" dockerd || return 1
        sleep 0.5
    done
    return 1
}

ensure_dockerd() {
    if docker_answers; then
        if "$DOCKER" info --format '{{json .RegistryConfig.Mirrors}}' 2>/dev/null | grep -q "http://$REG/"; then
            pid_alive "$DOCKERD_PID" dockerd || {
                [[ -s /var/run/docker.pid ]] && cp /var/run/docker.pid "$DOCKERD_PID"
            }
            return 0
        fi
        die "a Docker engine already answers on $DOCKER_SOCK without the mirror http://$REG; stop it first (scripts/testbed.sh down, or kill it)"
    fi
    stop_pid "$DOCKERD_PID" dockerd
    cleanup_stale_docker
    if ! grep -q cgroup /proc/mounts; then # no systemd: nobody mounted the cgroup hierarchies
        say "no cgroup filesystem mounted; running cgroupfs-mount"
        command -v cgroupfs-mount >/dev/null && cgroupfs-mount >>"$LOG_DIR/dockerd.log" 2>&1 || true
    fi
    trim_log "$LOG_DIR/dockerd.log"
    say "starting dockerd (log: $LOG_DIR/dockerd.log)"
    if start_dockerd "${BGEIMG_DOCKERD_STORAGE_DRIVER:-}"; then
        return 0
    fi
    stop_pid "$DOCKERD_PID" dockerd
    if [[ -z ${BGEIMG_DOCKERD_STORAGE_DRIVER:-} ]] &&
        tail -50 "$LOG_DIR/dockerd.log" | grep -qiE 'overlay|storage.driver|graphdriver'; then
        say "dockerd failed with the default storage driver; retrying with vfs (slow, big)"
        cleanup_stale_docker
        start_dockerd vfs && return 0
        stop_pid "$DOCKERD_PID" dockerd
    fi
    tail -30 "$LOG_DIR/dockerd.log" >&2
    die "dockerd did not come up within 60s (log: $LOG_DIR/dockerd.log)"
}

# ---------------------------------------------------------------- Docker 26 (second daemon, --modern)

D26_WRAPPER="$D26_DIR/docker"  # the 26 client on the 26 daemon with the plugin (for this script and people)
d26() { "$D26_WRAPPER" "$@"; }
docker26_answers() { [[ -x $D26_DOCKER ]] && timeout 10 "$D26_DOCKER" -H "unix://$D26_SOCK" info >/dev/null 2>&1; }

trixie_apt() { # apt-get with a private state: trixie's index only, the system's packages and sources untouched
    local a="$D26_DIR/apt"
    mkdir -p "$a/lists/partial" "$a/cache/archives/partial" "$a/empty.d"
    echo "deb $MIRROR_URL trixie main" >"$a/sources.list"
    apt-get -o Dir::Etc::SourceList="$a/sources.list" -o Dir::Etc::SourceParts="$a/empty.d" \
        -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts="$a/empty.d" \
        -o Dir::State::Lists="$a/lists" -o Dir::Cache="$a/cache" -o Dir::State::status=/dev/null \
        -o APT::Sandbox::User=root "$@"
}

ensure_docker26_pkgs() { # .debs cached in $D26_DIR/debs, unpacked once into $D26_ROOT
    local stamp="$D26_ROOT/.complete" want="${D26_PKGS[*]}"
    [[ -f $stamp && $(<"$stamp") == "$want" ]] && return 0
    local debs="$D26_DIR/debs" spec name version missing=() f
    mkdir -p "$debs"
    for spec in "${D26_PKGS[@]}"; do
        name=${spec%%=*}
        compgen -G "$debs/${name}_*.deb" >/dev/null || missing+=("$name")
    done
    if ((${#missing[@]})); then
        [[ ${BGEIMG_TESTBED_NO_APT:-0} == 1 ]] && die "Docker 26 packages not cached in $debs: ${missing[*]}"
        say "fetching trixie's ${missing[*]} (apt-get download, log: $LOG_DIR/apt.log)"
        { trixie_apt update && (cd "$debs" && trixie_apt download "${missing[@]}"); } >>"$LOG_DIR/apt.log" 2>&1 ||
            { tail -20 "$LOG_DIR/apt.log" >&2; die "apt-get download of the Docker 26 packages failed"; }
    fi
    rm -rf "$D26_ROOT.tmp"; mkdir -p "$D26_ROOT.tmp"
    for spec in "${D26_PKGS[@]}"; do
        name=${spec%%=*}; version=${spec#*=}
        f=$(compgen -G "$debs/${name}_*.deb" | sort -V | tail -1)
        [[ $(dpkg-deb -f "$f" Version) == "$version"* || $(dpkg-deb -f "$f" Version) == *":$version"* ]] ||
            die "$f is version $(dpkg-deb -f "$f" Version), not $version (remove it to fetch again)"
        dpkg -x "$f" "$D26_ROOT.tmp"
    done
    rm -rf "$D26_ROOT"; mv "$D26_ROOT.tmp" "$D26_ROOT"
    # the plugin reaches only clients run with DOCKER_CONFIG=$D26_CONFIG, never the default ~/.docker
    mkdir -p "$D26_CONFIG/cli-plugins"
    ln -sfn "$D26_ROOT/usr/libexec/docker/cli-plugins/docker-buildx" "$D26_CONFIG/cli-plugins/docker-buildx"
    printf '#!/bin/sh\n# Docker 26 client on the second test-bed daemon, with buildx (scripts/testbed.sh)\nDOCKER_CONFIG=%s exec %s -H unix://%s "$@"\n' \
        "$D26_CONFIG" "$D26_DOCKER" "$D26_SOCK" >"$D26_WRAPPER"
    chmod +x "$D26_WRAPPER"
    echo "$want" >"$stamp"
    say "Docker 26 unpacked into $D26_ROOT ($("$D26_DOCKER" --version))"
}

ensure_docker26_net() { # its own bridge; NAT and forwarding rules since it runs with --iptables=false
    local net
    net=$(python3 -c 'import ipaddress, sys; print(ipaddress.ip_interface(sys.argv[1]).network)' "$D26_SUBNET")
    if ! ip link show "$D26_BRIDGE" >/dev/null 2>&1; then
        ip link add "$D26_BRIDGE" type bridge
    fi
    ip addr show dev "$D26_BRIDGE" | grep -q " ${D26_SUBNET} " || ip addr add "$D26_SUBNET" dev "$D26_BRIDGE" 2>/dev/null || true
    ip link set "$D26_BRIDGE" up
    iptables -C FORWARD -i "$D26_BRIDGE" -j ACCEPT 2>/dev/null || iptables -I FORWARD 1 -i "$D26_BRIDGE" -j ACCEPT
    iptables -C FORWARD -o "$D26_BRIDGE" -j ACCEPT 2>/dev/null || iptables -I FORWARD 1 -o "$D26_BRIDGE" -j ACCEPT
    iptables -t nat -C POSTROUTING -s "$net" ! -o "$D26_BRIDGE" -j MASQUERADE 2>/dev/null ||
        iptables -t nat -A POSTROUTING -s "$net" ! -o "$D26_BRIDGE" -j MASQUERADE
    sysctl -qw net.ipv4.ip_forward=1
}

ensure_docker26() {
    ensure_docker26_pkgs
    if docker26_answers; then
        d26 info --format '{{json .RegistryConfig.Mirrors}}' 2>/dev/null | grep -q "http://$REG/" && return 0
        die "a Docker engine already answers on $D26_SOCK without the mirror http://$REG; stop it first"
    fi
    stop_pid "$D26_PID" dockerd
    local p
    if [[ -s $D26_EXEC/containerd/containerd.pid ]]; then # a containerd left by a killed dockerd 26
        p=$(<"$D26_EXEC/containerd/containerd.pid")
        [[ $p =~ ^[0-9]+$ && -r /proc/$p/comm && $(</proc/$p/comm) == containerd ]] && kill -KILL "$p" 2>/dev/null || true
    fi
    rm -f "$D26_SOCK" "$D26_EXEC/dockerd.pid" "$D26_EXEC"/containerd/*.sock* "$D26_EXEC/containerd/containerd.pid"
    ensure_docker26_net
    mkdir -p "$D26_DIR/data" "$D26_EXEC"
    cat >"$D26_DIR/daemon.json" <<JSON
{"features": {"containerd-snapshotter": true}}
JSON
    local args=(
        --config-file "$D26_DIR/daemon.json"
        -H "unix://$D26_SOCK"
        --pidfile "$D26_EXEC/dockerd.pid"
        --data-root "$D26_DIR/data"
        --exec-root "$D26_EXEC/exec"
        --bridge "$D26_BRIDGE" --iptables=false --ip-masq=false
        --registry-mirror "http://$REG"
        --insecure-registry "$REG"
        --insecure-registry "localhost:$PORT"
        --mtu "$(pick_mtu)"
        --init-path "$D26_ROOT/usr/bin/tini-static"  # trixie's dynamic tini needs glibc 2.38
    )
    trim_log "$LOG_DIR/dockerd26.log"
    say "starting Docker 26 on $D26_SOCK (log: $LOG_DIR/dockerd26.log)"
    echo "=== $(date -u +%FT%TZ) dockerd ${args[*]}" >>"$LOG_DIR/dockerd26.log"
    # its containerd, shims and docker-proxy come from the unpacked trixie packages; runc from bookworm
    PATH="$D26_ROOT/usr/bin:$D26_ROOT/usr/sbin:/usr/sbin:/usr/bin:/sbin:/bin" \
        setsid nohup "$D26_ROOT/usr/sbin/dockerd" "${args[@]}" >>"$LOG_DIR/dockerd26.log" 2>&1 </dev/null &
    echo $! >"$D26_PID"
    local i
    for i in $(seq 1 120); do
        docker26_answers && return 0
        pid_alive "$D26_PID" dockerd || break
        sleep 0.5
    done
    tail -30 "$LOG_DIR/dockerd26.log" >&2
    die "Docker 26 did not come up within 60s (log: $LOG_DIR/dockerd26.log)"
}

verify26_body() {
    local out
    echo "=== $(date -u +%FT%TZ) verify Docker 26"
    d26 info --format '{{.ServerVersion}} {{json .DriverStatus}}' | tee /dev/stderr | grep -q io.containerd.snapshotter || {
        echo "FAIL: not the containerd image store"; return 1; }
    d26 buildx version || return 1
    out=$(d26 run --rm --platform linux/amd64 python:3.11-slim python3 -c '
import urllib.request
print(urllib.request.urlopen("http://deb.debian.org/debian/dists/bookworm/Release", timeout=20).status)') || return 1
    echo "26 container -> deb.debian.org: $out"
    [[ $out == 200 ]] || { echo "FAIL: container network on $D26_BRIDGE"; return 1; }
    if [[ " ${ARCHES[*]} " == *" arm64 "* ]]; then
        out=$(d26 run --rm --platform linux/arm64 python:3.11-slim uname -m) || return 1
        echo "26 arm64 run: $out"
        [[ $out == aarch64 ]] || { echo "FAIL: arm64 under qemu"; return 1; }
    fi
    echo "=== verify Docker 26 OK"
}

verify26() {
    local log="$LOG_DIR/verify.log"
    verify26_body >>"$log" 2>&1 || { tail -25 "$log" >&2; die "Docker 26 verification failed (log: $log)"; }
    local arm=""; [[ " ${ARCHES[*]} " == *" arm64 "* ]] && arm=", arm64 run under qemu"
    say "verify Docker 26 OK: containerd image store, buildx, container network$arm"
}

smoke26() {
    local out
    out=$(d26 run --rm --platform linux/amd64 python:3.11-slim python3 -c 'print(1)' 2>>"$LOG_DIR/verify.log") ||
        die "Docker 26: docker run python:3.11-slim failed (log: $LOG_DIR/verify.log)"
    [[ $out == 1 ]] || die "Docker 26: docker run printed '$out', expected 1"
}

# ---------------------------------------------------------------- rootfs (debootstrap)

rootfs_tar() { echo "$ROOTFS_DIR/$SUITE-minbase-python3-$1.tar"; }

umount_under() { # lazily unmount everything mounted below $1 (deepest first)
    local d=$1 m
    while read -r m; do
        umount -l "$m" 2>/dev/null || true
    done < <(awk -v d="$d/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r)
}

build_rootfs() { # build_rootfs ARCH  (runs in a background job; all output to its log)
    local arch=$1 work="$ROOTFS_DIR/work-$arch" tar log="$LOG_DIR/debootstrap-$arch.log"
    tar=$(rootfs_tar "$arch")
    : >"$log"
    umount_under "$work"
    rm -rf --one-file-system "$work"
    mkdir -p "$work"
    local t0; t0=$(date +%s)
    if ! debootstrap --variant=minbase --arch "$arch" --include="$INCLUDE" \
            "$SUITE" "$work" "$MIRROR_URL" >>"$log" 2>&1; then
        umount_under "$work"
        if [[ $arch != amd64 ]]; then
            echo "=== one-pass debootstrap failed; trying --foreign + second stage with qemu" >>"$log"
            rm -rf --one-file-system "$work"; mkdir -p "$work"
            debootstrap --foreign --variant=minbase --arch "$arch" --include="$INCLUDE" \
                "$SUITE" "$work" "$MIRROR_URL" >>"$log" 2>&1 || return 1
            cp /usr/bin/qemu-aarch64-static "$work/usr/bin/"
            chroot "$work" /debootstrap/debootstrap --second-stage >>"$log" 2>&1 || { umount_under "$work"; return 1; }
            umount_under "$work"
            rm -f "$work/usr/bin/qemu-aarch64-static"
        else
            return 1
        fi
    fi
    umount_under "$work"
    # slim down what a container image does not need (the package lists, .debs, logs, devices)
    rm -rf --one-file-system "$work"/var/lib/apt/lists/* "$work"/var/cache/apt/*.bin \
        "$work"/var/cache/apt/archives/*.deb "$work"/var/cache/debconf/*-old \
        "$work"/var/log/* "$work"/tmp/* "$work"/var/tmp/* "$work"/dev/* "$work"/proc/* "$work"/sys/* \
        "$work"/debootstrap 2>/dev/null || true
    mkdir -p "$work/var/lib/apt/lists/partial"
    : >"$work/etc/resolv.conf"
    echo localhost >"$work/etc/hostname"
    # a layer tar: no "./" prefix, sorted, numeric owners
    (cd "$work" && tar --sort=name --numeric-owner --xattrs --xattrs-include='security.capability' \
        -cf "$tar.tmp" $(ls -A)) >>"$log" 2>&1
    mv "$tar.tmp" "$tar"
    rm -rf --one-file-system "$work"
    echo "=== built $tar in $(( $(date +%s) - t0 ))s" >>"$log"
}

ensure_rootfs() { # builds missing tarballs (in parallel)
    mkdir -p "$ROOTFS_DIR"
    local arch pids=() names=() rc=0 i
    for arch in "${ARCHES[@]}"; do
        [[ -s $(rootfs_tar "$arch") ]] && continue
        say "debootstrap $SUITE minbase + python3 for $arch (log: $LOG_DIR/debootstrap-$arch.log)"
        build_rootfs "$arch" &
        pids+=($!); names+=("$arch")
    done
    for i in "${!pids[@]}"; do
        if ! wait "${pids[$i]}"; then
            tail -15 "$LOG_DIR/debootstrap-${names[$i]}.log" >&2
            say "debootstrap for ${names[$i]} failed"
            rc=1
        else
            say "rootfs ${names[$i]} ready ($(du -h "$(rootfs_tar "${names[$i]}")" | cut -f1)) at $(elapsed)"
        fi
    done
    return $rc
}

# ---------------------------------------------------------------- images

images_present() { # the stand-ins have every architecture this `up` prepares
    local a args=()
    for a in "${ARCHES[@]}"; do args+=(--arch "$a"); done
    python3 "$IMAGES_PY" check --registry "$REG" --quiet "${args[@]}"
}

push_images() {
    local a args=()
    # every architecture made so far, so an amd64-only `up` never drops an arm64 variant pushed before
    for a in "${ALL_ARCHES[@]}"; do [[ -s $(rootfs_tar "$a") ]] && args+=(--rootfs "$a=$(rootfs_tar "$a")"); done
    say "pushing stand-in images to $REG (log: $LOG_DIR/push.log)"
    python3 "$IMAGES_PY" push --registry "$REG" --layer-cache "$ROOTFS_DIR" "${args[@]}" \
        >>"$LOG_DIR/push.log" 2>&1 || { tail -20 "$LOG_DIR/push.log" >&2; die "image push failed"; }
}

# ---------------------------------------------------------------- verification

smoke() { # quick: a container runs and Python works (seconds when the image is local)
    local out
    out=$("$DOCKER" run --rm --platform linux/amd64 python:3.11-slim python3 -c 'print(1)' 2>>"$LOG_DIR/verify.log") ||
        die "docker run python:3.11-slim failed (log: $LOG_DIR/verify.log)"
    [[ $out == 1 ]] || die "docker run printed '$out', expected 1"
}

verify_body() { # every step checked explicitly (set -e does not apply under ||)
    echo "=== $(date -u +%FT%TZ) verify"
    if [[ " ${ARCHES[*]} " == *" arm64 "* ]]; then verify_arm64 || return 1; fi
    verify_amd64
}

verify_arm64() {
    local ctx out arch iid
    "$DOCKER" pull --platform linux/arm64 python:3.11-slim || return 1
    arch=$("$DOCKER" image inspect -f '{{.Architecture}}' python:3.11-slim) || return 1
    echo "arm64 pull -> Architecture $arch"
    [[ $arch == arm64 ]] || { echo "FAIL: expected arm64"; return 1; }
    "$DOCKER" pull --platform linux/arm64 nvidia/cuda:12.4.1-runtime-ubuntu22.04 || return 1
    ctx=$(mktemp -d)
    local iid
    printf 'FROM python:3.11-slim\nRUN uname -m\n' >"$ctx/Dockerfile"
    out=$(DOCKER_BUILDKIT=0 "$DOCKER" build --no-cache --iidfile "$ctx/iid0" --platform linux/arm64 "$ctx" 2>&1); echo "$out"
    grep -qx aarch64 <<<"$out" || { echo "FAIL: classic builder did not print aarch64"; return 1; }
    out=$(DOCKER_BUILDKIT=1 "$DOCKER" build --no-cache --iidfile "$ctx/iid1" --progress=plain --platform linux/arm64 "$ctx" 2>&1); echo "$out"
    grep -qE '^#[0-9]+ [0-9.]+ aarch64$' <<<"$out" || { echo "FAIL: BuildKit did not print aarch64"; return 1; }
    for iid in "$ctx"/iid*; do "$DOCKER" rmi "$(<"$iid")" >/dev/null 2>&1 || true; done
    rm -rf "$ctx"
}

verify_amd64() {
    local out arch
    # leave the native platform under the plain tags so FROM/run without --platform stay amd64
    "$DOCKER" pull --platform linux/amd64 python:3.11-slim || return 1
    "$DOCKER" pull --platform linux/amd64 nvidia/cuda:12.4.1-runtime-ubuntu22.04 || return 1
    arch=$("$DOCKER" image inspect -f '{{.Architecture}}' python:3.11-slim) || return 1
    [[ $arch == amd64 ]] || { echo "FAIL: expected amd64 after re-pull, got $arch"; return 1; }
    out=$("$DOCKER" run --rm python:3.11-slim python3 -c 'print(1)') || return 1
    echo "run: $out"
    [[ $out == 1 ]] || { echo "FAIL: run"; return 1; }
    out=$("$DOCKER" run --rm python:3.11-slim python3 -c '
import urllib.request
print(urllib.request.urlopen("http://deb.debian.org/debian/dists/bookworm/Release", timeout=20).status)') || return 1
    echo "container -> deb.debian.org: $out"
    [[ $out == 200 ]] || { echo "FAIL: container network"; return 1; }
    echo "=== verify OK"
}

verify() {
    local log="$LOG_DIR/verify.log"
    mkdir -p "$LOG_DIR"
    say "verify: pulls through the mirror, ${ARCHES[*]} builds (classic + BuildKit), container network (log: $log)"
    verify_body >>"$log" 2>&1 || { tail -25 "$log" >&2; die "verification failed (log: $log)"; }
    if [[ " ${ARCHES[*]} " == *" arm64 "* ]]; then
        say "verify OK: arm64 pull is arm64, classic + BuildKit arm64 builds print aarch64, container reaches deb.debian.org"
    else
        say "verify OK: amd64 pull and run, container reaches deb.debian.org (arm64 not prepared: up --arch arm64)"
    fi
}

free_gb() { df -P --block-size=1G "$1" | awk 'NR==2 {print $4}'; }

trim_engine() { # a machine that runs the suite often fills its disk with test images and build cache
    local root min="${BGEIMG_TESTBED_MIN_FREE_GB:-25}" DOCKER=${1:-$DOCKER}
    root=$("$DOCKER" info --format '{{.DockerRootDir}}' 2>/dev/null) || return 0
    (( $(free_gb "$root") < min )) || return 0
    say "trim: $(free_gb "$root") GB free at $root (< $min): removing earlier test images, trimming the build cache"
    # only test images tagged over two hours ago: a suite running now on this shared engine keeps its images
    "$DOCKER" images --format '{{.Repository}}:{{.Tag}}' | grep -E '^(bgeimg-test|127\.0\.0\.1:[0-9]+/bgeimg-test)' \
        | xargs -r "$DOCKER" image inspect --format '{{index .RepoTags 0}}|{{.Metadata.LastTagTime}}|{{.Created}}' 2>/dev/null \
        | python3 -c '
import datetime, sys
now = datetime.datetime.now(datetime.timezone.utc)
def when(text):
    try:
        return datetime.datetime.fromisoformat(text.strip()[:19].replace(" ", "T")).replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return now - datetime.timedelta(days=1)  # unknown: old
for line in sys.stdin:
    ref, tagged, created = line.strip().split("|")
    if (now - max(when(tagged), when(created))).total_seconds() > 7200:
        print(ref)' | xargs -r "$DOCKER" rmi -f >/dev/null 2>&1 || true
    "$DOCKER" container prune -f >/dev/null 2>&1 || true
    "$DOCKER" image prune -f >/dev/null 2>&1 || true
    "$DOCKER" builder prune -f --keep-storage "${BGEIMG_TESTBED_BUILD_CACHE:-10GB}" >/dev/null 2>&1 || true
    say "trim: $(free_gb "$root") GB free"
}

# ---------------------------------------------------------------- commands

cmd_up() {
    local want_verify=0 pushed=0 modern=${BGEIMG_TESTBED_MODERN:-0} arches=()
    while (($#)); do
        case $1 in
            --verify) want_verify=1 ;;
            --modern) modern=1 ;;
            --arch) shift; [[ ${1:-} =~ ^(amd64|arm64)$ ]] || die "--arch takes amd64 or arm64"; arches+=("$1") ;;
            *) die "unknown option for up: $1 (up [--arch amd64|arm64]... [--modern] [--verify])" ;;
        esac
        shift
    done
    if ((${#arches[@]})); then ARCHES=("${arches[@]}"); fi
    [[ $(id -u) == 0 ]] || die "must run as root (dockerd, binfmt_misc, debootstrap)"
    mkdir -p "$CACHE" "$LOG_DIR" "$RUN_DIR" "$ROOTFS_DIR"
    need_pkgs
    ensure_binfmt
    # debootstrap (slow, first run only) in the background while the daemons come up
    local rootfs_job=""
    local a missing=0
    for a in "${ARCHES[@]}"; do [[ -s $(rootfs_tar "$a") ]] || missing=1; done
    ensure_registry
    if ! images_present; then
        if ((missing)); then ensure_rootfs & rootfs_job=$!; fi
    fi
    ensure_dockerd
    trim_engine
    say "dockerd and registry up at $(elapsed)"
    local d26_note=""
    if ((modern)); then  # what only the full test run needs: the second engine and the release tools
        ensure_release_tools
        ensure_docker26
        trim_engine "$D26_WRAPPER"
        d26_note=" docker26=unix://$D26_SOCK"
        say "Docker 26 up on $D26_SOCK at $(elapsed)"
    fi
    if [[ -n $rootfs_job ]]; then
        wait "$rootfs_job" || die "building the stand-in rootfs failed"
    fi
    if ! images_present; then
        ensure_rootfs || die "building the stand-in rootfs failed"
        push_images
        images_present || die "images still missing from the registry after the push"
        pushed=1
    fi
    if ((pushed || want_verify)); then
        verify
        if ((modern)); then verify26; fi
    else
        smoke
        if ((modern)); then smoke26; fi
    fi
    say "up in $(elapsed): DOCKER_HOST=$DOCKER_HOST registry=$REG$d26_note (eval \"\$($0 env)\")"
}

cmd_down() {
    if pid_alive "$DOCKERD_PID" dockerd || docker_answers; then
        say "stopping dockerd"
        [[ -s /var/run/docker.pid ]] && ! pid_alive "$DOCKERD_PID" dockerd && cp /var/run/docker.pid "$DOCKERD_PID"
        stop_pid "$DOCKERD_PID" dockerd
    fi
    rm -f "$DOCKERD_PID"
    if pid_alive "$D26_PID" dockerd; then
        say "stopping Docker 26"
        stop_pid "$D26_PID" dockerd
    fi
    if pid_alive "$REG_PID" docker-registry; then
        say "stopping registry"
    fi
    stop_pid "$REG_PID" docker-registry
    say "down (cache kept in $CACHE)"
}

cmd_status() {
    local ok=0
    if docker_answers; then
        echo "dockerd:  up ($("$DOCKER" version -f '{{.Server.Version}}' 2>/dev/null), storage $("$DOCKER" info -f '{{.Driver}}' 2>/dev/null), pid $(cat /var/run/docker.pid 2>/dev/null || echo ?))"
    else
        echo "dockerd:  DOWN"; ok=1
    fi
    if registry_answers; then
        echo "registry: up at http://$REG (pid $(cat "$REG_PID" 2>/dev/null || echo ?), storage $CACHE/registry)"
    else
        echo "registry: DOWN (http://$REG)"; ok=1
    fi
    if docker26_answers; then
        echo "docker26: up ($(d26 version -f '{{.Server.Version}}' 2>/dev/null), $(d26 info -f '{{.Driver}}' 2>/dev/null) via containerd, buildx $(d26 buildx version 2>/dev/null | awk '{print $2}'), $D26_SOCK)"
    else
        echo "docker26: not running (up --modern starts it)"
    fi
    if binfmt_ok; then
        echo "binfmt:   qemu-aarch64 enabled ($(grep '^flags' $BINFMT_DIR/qemu-aarch64), $(grep '^interpreter' $BINFMT_DIR/qemu-aarch64))"
    else
        echo "binfmt:   qemu-aarch64 MISSING"; ok=1
    fi
    if registry_answers; then
        echo "images:"
        python3 "$IMAGES_PY" list --registry "$REG" || ok=1
        images_present || { echo "  (stand-in images missing)"; ok=1; }
    fi
    return $ok
}

cmd_env() {
    cat <<EOF
export DOCKER_HOST=unix://$DOCKER_SOCK
export BGEIMG_TEST_REGISTRY=$REG
export BGEIMG_TESTBED_CACHE=$CACHE
export BGEIMG_COSIGN=$COSIGN_BIN
export BGEIMG_NGINX=$NGINX_BIN
export PATH=/usr/sbin:/usr/bin:/sbin:/bin:\$PATH
EOF
    # the second engine, for tests that want Docker 26 (tests skip it, or fail under CI, when it is absent)
    if [[ -x $D26_DOCKER ]]; then
        cat <<EOF
export BGEIMG_TEST_DOCKER26_HOST=unix://$D26_SOCK
export BGEIMG_TEST_DOCKER26_CLI=$D26_DOCKER
export BGEIMG_TEST_BUILDX_CONFIG=$D26_CONFIG
EOF
    fi
}

case ${1:-} in
    up) shift; cmd_up "$@" ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) cmd_env ;;
    verify) verify ;;
    *) echo "usage: $0 up [--arch amd64|arm64]... [--modern] [--verify]|down|status|env|verify" >&2; exit 2 ;;
esac
