#!/usr/bin/env bash
# bgeimg test bed: a real Docker engine, a local registry used as the Docker Hub
# mirror, qemu arm64 emulation, and stand-in base images, on Debian bookworm x86_64
# without systemd (see docs: DESIGN.md "The test environment").
#
#   scripts/testbed.sh up [--verify]   start everything (idempotent; seconds when cached)
#   scripts/testbed.sh verify          full proof: pull/run, arm64 builds (classic + BuildKit)
#   scripts/testbed.sh status          exit 0 when dockerd, registry, binfmt and images are all up
#   scripts/testbed.sh down            stop dockerd and the registry, keep the cache
#   scripts/testbed.sh env             export lines for tests: eval "$(scripts/testbed.sh env)"
#
# Environment:
#   BGEIMG_TESTBED_CACHE   cache dir (default /var/cache/bgeimg-testbed): rootfs tarballs,
#                          registry storage, logs, pid files
#   BGEIMG_REGISTRY_PORT   registry port on 127.0.0.1 (default 5000)
#   BGEIMG_DOCKERD_STORAGE_DRIVER  force a storage driver (default: dockerd's choice, vfs fallback)
#   BGEIMG_TESTBED_NO_APT=1        never run apt-get (fail instead)
#   (up also unpacks cosign and nginx into $CACHE/tools for the release tests; `env` exports their paths)
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
ARCHES=(amd64 arm64)
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
IMAGES_PY="$SCRIPT_DIR/testbed_images.py"
ROOTFS_DIR="$CACHE/rootfs"
LOG_DIR="$CACHE/logs"
RUN_DIR="$CACHE/run"
REG_PID="$RUN_DIR/registry.pid"
DOCKERD_PID="$RUN_DIR/dockerd.pid"
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
}

# ---------------------------------------------------------------- binfmt

binfmt_ok() {
    [[ -f $BINFMT_DIR/qemu-aarch64 ]] || return 1
    grep -q '^enabled' "$BINFMT_DIR/qemu-aarch64" || return 1
    grep -q '^flags:.*F' "$BINFMT_DIR/qemu-aarch64" || return 1
    return 0
}

ensure_binfmt() {
    if ! mountpoint -q "$BINFMT_DIR" 2>/dev/null; then
        mount -t binfmt_misc binfmt_misc "$BINFMT_DIR" 2>/dev/null ||
            die "cannot mount binfmt_misc at $BINFMT_DIR (kernel without binfmt_misc or no privilege): arm64 emulation impossible here"
    fi
    if ! binfmt_ok; then
        if [[ -f $BINFMT_DIR/qemu-aarch64 ]]; then
            # registered but disabled or without the F flag: re-register
            echo -1 >"$BINFMT_DIR/qemu-aarch64" 2>/dev/null || true
        fi
        update-binfmts --enable qemu-aarch64 >>"$LOG_DIR/binfmt.log" 2>&1 || true
    fi
    if ! binfmt_ok; then
        # register directly, F (fix binary: interpreter opened now, works inside containers),
        # P (preserve argv0), C would need credentials; not needed.
        local interp=/usr/bin/qemu-aarch64-static
        [[ -x $interp ]] || die "no $interp"
        [[ -f $BINFMT_DIR/qemu-aarch64 ]] && { echo -1 >"$BINFMT_DIR/qemu-aarch64" || true; }
        printf '%s' ':qemu-aarch64:M::\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:'"$interp"':FP' \
            >"$BINFMT_DIR/register" 2>>"$LOG_DIR/binfmt.log" || true
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

images_present() { python3 "$IMAGES_PY" check --registry "$REG" --quiet; }

push_images() {
    local a args=()
    for a in "${ARCHES[@]}"; do args+=(--rootfs "$a=$(rootfs_tar "$a")"); done
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
    local ctx out arch
    echo "=== $(date -u +%FT%TZ) verify"
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
    say "verify: pulls through the mirror, arm64 builds (classic + BuildKit), container network (log: $log)"
    verify_body >>"$log" 2>&1 || { tail -25 "$log" >&2; die "verification failed (log: $log)"; }
    say "verify OK: arm64 pull is arm64, classic + BuildKit arm64 builds print aarch64, container reaches deb.debian.org"
}

free_gb() { df -P --block-size=1G "$1" | awk 'NR==2 {print $4}'; }

trim_engine() { # a machine that runs the suite often fills its disk with test images and build cache
    local root min="${BGEIMG_TESTBED_MIN_FREE_GB:-25}"
    root=$("$DOCKER" info --format '{{.DockerRootDir}}' 2>/dev/null) || return 0
    (( $(free_gb "$root") < min )) || return 0
    say "trim: $(free_gb "$root") GB free at $root (< $min): removing earlier test images, trimming the build cache"
    "$DOCKER" images --format '{{.Repository}}:{{.Tag}}' | grep -E '^(bgeimg-test|127\.0\.0\.1:[0-9]+/bgeimg-test)' \
        | xargs -r "$DOCKER" rmi -f >/dev/null 2>&1 || true
    "$DOCKER" container prune -f >/dev/null 2>&1 || true
    "$DOCKER" image prune -f >/dev/null 2>&1 || true
    "$DOCKER" builder prune -f --keep-storage "${BGEIMG_TESTBED_BUILD_CACHE:-10GB}" >/dev/null 2>&1 || true
    say "trim: $(free_gb "$root") GB free"
}

# ---------------------------------------------------------------- commands

cmd_up() {
    local want_verify=0 pushed=0
    [[ ${1:-} == --verify ]] && want_verify=1
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
    ensure_release_tools
    say "dockerd and registry up at $(elapsed)"
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
    else
        smoke
    fi
    say "up in $(elapsed): DOCKER_HOST=$DOCKER_HOST registry=$REG (eval \"\$($0 env)\")"
}

cmd_down() {
    if pid_alive "$DOCKERD_PID" dockerd || docker_answers; then
        say "stopping dockerd"
        [[ -s /var/run/docker.pid ]] && ! pid_alive "$DOCKERD_PID" dockerd && cp /var/run/docker.pid "$DOCKERD_PID"
        stop_pid "$DOCKERD_PID" dockerd
    fi
    rm -f "$DOCKERD_PID"
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
    if binfmt_ok; then
        echo "binfmt:   qemu-aarch64 enabled ($(grep '^flags' $BINFMT_DIR/qemu-aarch64))"
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
}

case ${1:-} in
    up) shift; cmd_up "$@" ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) cmd_env ;;
    verify) verify ;;
    *) echo "usage: $0 up [--verify]|down|status|env|verify" >&2; exit 2 ;;
esac
