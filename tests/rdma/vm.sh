#!/usr/bin/env bash
# tests/rdma/vm.sh - run a script inside a small QEMU guest that has a real verbs device: soft-RoCE (rdma_rxe).
#
#   tests/rdma/vm.sh [--keep] [--timeout SECONDS] RUN_SCRIPT [FILE...]
#   tests/rdma/vm.sh --deps        check for (as root: install) the Debian packages this needs, then exit
#   tests/rdma/vm.sh --prepare     also fetch the kernel and build the cached base initramfs, then exit
#
# The guest is Debian's stock kernel (the package linux-image-amd64 depends on, unpacked, never installed) with a
# busybox initramfs. Its /init loads crc32_generic, udp_tunnel, ip6_udp_tunnel, ib_core, ib_uverbs, rdma_rxe and
# dummy, brings up lo and dummy0 (10.99.0.1/24, inside the guest only: it has no network card), adds rxe0 on dummy0,
# waits for port 1 to be ACTIVE with the RoCE v2 GID ::ffff:10.99.0.1, then runs RUN_SCRIPT with busybox sh from
# the directory vm.sh was started in, with the FILEs as its arguments (as given) and TBC_RDMA_DEV=rxe0,
# TBC_RDMA_IP=10.99.0.1 and TBC_RDMA_GID_INDEX in its environment.
# The script's output (stdout and stderr, on the second serial port) is copied to stdout as it comes, and vm.sh
# exits with the script's exit status; 124 if the guest ran longer than the timeout (default 600 s,
# TBC_RDMA_VM_TIMEOUT), 125 if the guest broke before reporting one.
#
# RUN_SCRIPT and each FILE (programs, models, more scripts; a directory is copied whole) are copied into the guest at
# the same absolute paths they have here, so relative paths mean the same inside and out. Programs get the libraries
# ldd lists; the base image already holds what ldd cannot see (libibverbs.so.1 for dlopen, the rxe provider and its
# .driver file, libgcc_s) and ibverbs-utils, perftest, iproute2's ip and rdma, and busybox for the rest. Build
# programs for the guest without -march=native: QEMU's emulated CPU has no AVX-512.
#
# Cached in TBC_RDMA_VM_CACHE (default ~/.cache/tbcluster/rdma-vm): kernel-VERSION/ (the ELF vmlinux and the
# modules in load order) and base-VERSION-HASH.cpio (busybox, libraries, tools, modules, /init); each run appends a
# small archive of its own files (the kernel unpacks concatenated archives in order). --keep leaves the run's
# directory (initrd, console log, output) in place and prints where it is. KVM is used only when the CPU has
# vmx/svm and the KVM is not a PVM one (which hangs a stock kernel); otherwise TCG, about 2-3 s from start to
# RUN_SCRIPT. Other settings: TBC_RDMA_VM_MEM (MiB, default 1024), TBC_RDMA_VM_CPUS (default 2),
# TBC_RDMA_VM_ACCEL (kvm or tcg), TBC_RDMA_VM_KERNEL (a linux-image-VERSION package name instead of the current one).
# Timing inside the guest is emulated: two processes that busy-poll each other take ~4-8 ms a round trip (the guest's
# scheduler tick) once the host is busy, against ~0.2 ms when it is idle.
set -euo pipefail

script_path="$(realpath -s "${BASH_SOURCE[0]}")"
keep=0
timeout="${TBC_RDMA_VM_TIMEOUT:-600}"
mode=run
while [ $# -gt 0 ]; do
    case "$1" in
    --keep) keep=1; shift ;;
    --timeout) timeout="${2:-}"; shift $(($# > 1 ? 2 : 1)) ;;
    --deps) mode=deps; shift ;;
    --prepare) mode=prepare; shift ;;
    --) shift; break ;;
    -h | --help) sed -n '2,/^set -e/{/^set -e/d;s/^# \{0,1\}//;p}' "$script_path"; exit 0 ;;
    -*) echo "vm.sh: unknown option $1" >&2; exit 2 ;;
    *) break ;;
    esac
done
if [ "$mode" = run ] && [ $# -lt 1 ]; then
    echo "usage: $0 [--keep] [--timeout SECONDS] RUN_SCRIPT [FILE...]   (or --deps, --prepare, --help)" >&2
    exit 2
fi
case "$timeout" in '' | *[!0-9]*) echo "vm.sh: --timeout needs whole seconds, not '$timeout'" >&2; exit 2 ;; esac

say() { echo "vm.sh: $*" >&2; }
die() { say "$*"; exit 1; }

# ---- packages ---------------------------------------------------------------------------------------------------
multiarch="$(gcc -print-multiarch 2>/dev/null || true)"
[ -n "$multiarch" ] || multiarch="$(uname -m)-linux-gnu"
libdir="/usr/lib/$multiarch"
provider_dir="$libdir/libibverbs"

missing=()
need() {  # need PACKAGE TEST...: PACKAGE is missing unless the test succeeds
    local pkg="$1"
    shift
    "$@" >/dev/null 2>&1 || missing+=("$pkg")
}
# shellcheck disable=SC2317 # called through need
have() { command -v "$1"; }
# shellcheck disable=SC2317
have_rxe() { compgen -G "$provider_dir/librxe-rdmav*.so" && test -f /etc/libibverbs.d/rxe.driver; }
need qemu-system-x86 have qemu-system-x86_64
need busybox-static have busybox
need cpio have cpio
need kmod have depmod
need xz-utils have xz
need libibverbs1 test -e "$libdir/libibverbs.so.1"
need ibverbs-providers have_rxe
need libibverbs-dev test -f /usr/include/infiniband/verbs.h  # to build programs for the guest
need ibverbs-utils have ibv_devinfo
need perftest have ib_send_lat
need iproute2 have rdma
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "vm.sh: missing Debian packages for the RDMA guest. Install them with:" >&2
        echo "    sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
        exit 1
    fi
    echo "vm.sh: installing missing Debian packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q </dev/null >&2
    apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null >&2
fi
[ "$mode" = deps ] && { echo "vm.sh: the packages for the RDMA guest are present" >&2; exit 0; }

# ---- the kernel: unpacked once per version ----------------------------------------------------------------------
cache="${TBC_RDMA_VM_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/tbcluster/rdma-vm}"
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9  # one builder at a time; a run holds it only while it copies the base archive

kernel_package() {  # the linux-image-VERSION package that linux-image-amd64 depends on, or nothing
    apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' |
        head -n 1
}
kpkg="${TBC_RDMA_VM_KERNEL:-$(kernel_package)}"
if [ -z "$kpkg" ] && [ "$(id -u)" -eq 0 ]; then
    apt-get update -q </dev/null >&2 || true
    kpkg="$(kernel_package)"
fi
if [ -z "$kpkg" ]; then
    # No package lists: the newest kernel already cached will do.
    kdir="$(find "$cache" -maxdepth 1 -name 'kernel-*' -type d | sort -V | tail -n 1)"
    [ -n "$kdir" ] || die "cannot tell which kernel to use: apt-cache knows no linux-image-amd64 (run apt-get update)"
    kver="${kdir##*/kernel-}"
else
    kver="${kpkg#linux-image-}"
    kdir="$cache/kernel-$kver"
fi

extract_vmlinux() {  # extract_vmlinux BZIMAGE OUT: the ELF kernel inside an xz-compressed bzImage
    local off
    while read -r off; do
        tail -c "+$((off + 1))" "$1" | xz -dc --single-stream >"$2" 2>/dev/null || true
        [ "$(head -c 4 "$2" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] && return 0
    done < <(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$1" | cut -d: -f1)
    return 1
}

if [ ! -f "$kdir/vmlinux" ]; then
    say "preparing kernel $kver (once; cached in $kdir)"
    tmp="$(mktemp -d "$cache/.kernel.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    # As root, apt would first try to download as its sandbox user, who cannot write here.
    sandbox=()
    [ "$(id -u)" -ne 0 ] || sandbox=(-o APT::Sandbox::User=root)
    (cd "$tmp" && apt-get download -q "${sandbox[@]}" "$kpkg" </dev/null >&2) || die "apt-get download $kpkg failed"
    dpkg-deb -x "$tmp"/linux-image-*.deb "$tmp/x"
    depmod -b "$tmp/x" "$kver"
    mkdir -p "$tmp/k/modules"
    # crc32_generic first: rxe needs the "crc32" hash but its module does not depend on a provider of it.
    : >"$tmp/k/load-order"
    for m in crc32_generic rdma_rxe dummy; do
        modprobe -d "$tmp/x" -S "$kver" --show-depends "$m" | awk '$1 == "insmod" {print $2}'
    done | awk '!seen[$0]++' | while read -r ko; do
        name="${ko##*/}"
        case "$name" in
        *.ko) cp "$ko" "$tmp/k/modules/$name" ;;
        *.ko.xz) name="${name%.xz}"; xz -dc "$ko" >"$tmp/k/modules/$name" ;;
        *) die "cannot unpack module $ko" ;;
        esac
        echo "$name" >>"$tmp/k/load-order"
    done
    extract_vmlinux "$tmp/x/boot/vmlinuz-$kver" "$tmp/k/vmlinux" || die "no xz-compressed ELF kernel in vmlinuz-$kver"
    dpkg-deb -f "$tmp"/linux-image-*.deb Version >"$tmp/k/package-version"
    rm -rf "$kdir"
    mv "$tmp/k" "$kdir"
    # Older kernels are not used again (unless apt's lists go back): drop them and their base archives.
    find "$cache" -mindepth 1 -maxdepth 1 \( -name 'kernel-*' -o -name 'base-*.cpio' \) \
        ! -name "kernel-$kver" ! -name "base-$kver-*" -exec rm -rf {} +
    rm -rf "$tmp"
    trap - EXIT
fi

# ---- the base initramfs: once per kernel, version of this script and of the packages it copies -------------------
# mirror_links ROOT DIR: the symlinks along DIR (/lib -> usr/lib, a build directory linked elsewhere) made in ROOT
# too, so DIR resolves there as it does here. Each link is created at its real location, never through a link.
mirror_links() {
    local root="$1" dir="$2" p="" comp parent target
    local -a comps
    IFS=/ read -ra comps <<<"${dir#/}"
    for comp in "${comps[@]}"; do
        [ -n "$comp" ] || continue
        parent="${p:-/}"
        p="$p/$comp"
        [ -L "$p" ] || continue
        parent="$(realpath "$parent")"
        [ -L "$root$parent/$comp" ] && continue
        target="$(readlink "$p")"
        mkdir -p "$root$parent"
        ln -s "$target" "$root$parent/$comp"
        case "$target" in /*) mirror_links "$root" "$target" ;; *) mirror_links "$root" "$parent/$target" ;; esac
    done
}
# stage_dir ROOT DIR: DIR exists in ROOT, reached the same way as here.
stage_dir() {
    mkdir -p "$1$(realpath "$2")"
    mirror_links "$1" "$2"
}
# stage_file ROOT PATH: PATH copied into ROOT at its real location, reachable by PATH, with every symlink on the way
# (libfoo.so.1 -> libfoo.so.1.2.3) recreated.
stage_file() {
    local root="$1" path="$2" dir real target
    dir="$(dirname "$path")"
    stage_dir "$root" "$dir"
    real="$(realpath "$dir")/$(basename "$path")"
    if [ -L "$path" ]; then
        target="$(readlink "$path")"
        [ -e "$root$real" ] || [ -L "$root$real" ] || ln -s "$target" "$root$real"
        case "$target" in /*) stage_file "$root" "$target" ;; *) stage_file "$root" "$dir/$target" ;; esac
    else
        [ -e "$root$real" ] || cp -p "$path" "$root$real"
    fi
}
# stage_program ROOT PATH: the file and, for a dynamic ELF program or library, the libraries ldd lists.
stage_program() {
    local root="$1" path="$2" lib
    stage_file "$root" "$path"
    [ "$(head -c 4 "$path" | od -An -tx1 | tr -d ' ')" = 7f454c46 ] || return 0
    for lib in $(ldd "$path" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
        stage_file "$root" "$lib"
    done
}
stage_root() {  # the directory skeleton, with the host's merged-/usr links
    local root="$1" d
    mkdir -p "$root"/{dev,proc,sys,tmp,run,root,etc}
    for d in /bin /sbin /lib /lib64 /usr/bin /usr/sbin /usr/lib; do
        [ -e "$d" ] && stage_dir "$root" "$d"
    done
    return 0
}
make_cpio() {  # make_cpio DIR OUT: a newc archive of DIR, owned by root, in a stable order
    (cd "$1" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) >"$2"
}

packages_state="$(dpkg-query -W busybox-static libibverbs1 ibverbs-providers ibverbs-utils perftest iproute2 libc6 \
    2>/dev/null || true)"
base_key="$(printf '%s\n%s\n' "$kver" "$packages_state" | cat - "$script_path" | sha256sum | cut -c1-12)"
base="$cache/base-$kver-$base_key.cpio"
if [ ! -f "$base" ]; then
    say "building the base initramfs for $kver (once; cached as $base)"
    tmp="$(mktemp -d "$cache/.base.XXXXXX")"
    trap 'rm -rf "$tmp"' EXIT
    root="$tmp/root"
    stage_root "$root"
    bb="$(command -v busybox)"
    stage_program "$root" "$bb"
    for p in ip rdma ibv_devinfo ibv_devices ibv_rc_pingpong ibv_uc_pingpong ibv_ud_pingpong ibv_srq_pingpong \
        ib_send_lat ib_send_bw ib_write_lat ib_write_bw ib_read_lat ib_read_bw; do
        path="$(command -v "$p")" || die "no $p"
        stage_program "$root" "$path"
    done
    stage_program "$root" "$libdir/libibverbs.so.1"
    for p in "$provider_dir"/librxe-rdmav*.so; do stage_program "$root" "$p"; done
    stage_file "$root" /etc/libibverbs.d/rxe.driver
    gcc_s="$(ldconfig -p | awk '$1 == "libgcc_s.so.1" && $NF ~ /^\// {print $NF; exit}')"
    [ -n "$gcc_s" ] && stage_program "$root" "$gcc_s"
    # Busybox for every command the packages above did not bring.
    bbdir="$(realpath "$(dirname "$bb")")"
    for a in $(busybox --list); do
        [ -e "$root/usr/bin/$a" ] || [ -e "$root/usr/sbin/$a" ] || [ -e "$root$bbdir/$a" ] ||
            ln -s busybox "$root$bbdir/$a"
    done
    mkdir -p "$root/lib/modules/$kver"
    cp "$kdir"/modules/*.ko "$kdir/load-order" "$root/lib/modules/$kver/"
    printf '127.0.0.1\tlocalhost\n10.99.0.1\trdma-guest\n' >"$root/etc/hosts"
    printf 'hosts: files\n' >"$root/etc/nsswitch.conf"
    printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
    printf 'root:x:0:\n' >"$root/etc/group"
    cat >"$root/init" <<EOF
#!/bin/sh
# The guest's first process: bring up rxe0, run the script, report its exit status, power off.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
KVER=$kver
EOF
    cat >>"$root/init" <<'EOF'
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
out=/dev/ttyS1
stty -F "$out" raw -echo 2>/dev/null
finish() {  # finish STATUS: report on both ports, then power off
    echo "TBC-RDMA-EXIT $1" >"$out"
    echo "TBC-RDMA-EXIT $1" >/dev/console
    sync
    poweroff -f
    sleep 10
}
broken() { echo "vm init: $*" >"$out"; echo "vm init: $*" >/dev/console; finish 125; }

while read -r ko; do
    case "$ko" in dummy.ko) args=numdummies=0 ;; *) args= ;; esac
    # shellcheck disable=SC2086 # no arguments or one
    insmod "/lib/modules/$KVER/$ko" $args || broken "insmod $ko failed"
done <"/lib/modules/$KVER/load-order"

ip link set lo up || broken "lo does not come up"
ip link add dummy0 type dummy || broken "cannot add dummy0"
ip addr add 10.99.0.1/24 dev dummy0 || broken "cannot give dummy0 its address"
ip link set dummy0 up || broken "dummy0 does not come up"
rdma link add rxe0 type rxe netdev dummy0 || broken "rdma link add rxe0 failed"

# The port goes ACTIVE and the GID table fills asynchronously: wait for the RoCE v2 GID of 10.99.0.1.
port=/sys/class/infiniband/rxe0/ports/1
want=0000:0000:0000:0000:0000:ffff:0a63:0001
gid_index=
n=0
while [ -z "$gid_index" ]; do
    if grep -q ACTIVE "$port/state" 2>/dev/null; then
        for g in "$port"/gids/*; do
            i="${g##*/}"
            if [ "$(cat "$g" 2>/dev/null)" = "$want" ] &&
                [ "$(cat "$port/gid_attrs/types/$i" 2>/dev/null)" = "RoCE v2" ]; then
                gid_index=$i
                break
            fi
        done
    fi
    n=$((n + 1))
    [ "$n" -le 1000 ] || broken "rxe0 port 1: no ACTIVE state with RoCE v2 GID ::ffff:10.99.0.1 after 10 s" \
        "(state: $(cat "$port/state" 2>/dev/null))"
    [ -n "$gid_index" ] || usleep 10000
done
export TBC_RDMA_DEV=rxe0 TBC_RDMA_IP=10.99.0.1 TBC_RDMA_GID_INDEX="$gid_index"

. /tbc/run.env
echo "TBC-RDMA-START $(cut -d' ' -f1 /proc/uptime) gid_index=$gid_index" >/dev/console
cd "$TBC_RUN_DIR" || broken "no directory $TBC_RUN_DIR"
sh "$TBC_RUN_SCRIPT" "$@" >"$out" 2>&1 </dev/null
finish $?
EOF
    chmod 755 "$root/init"
    make_cpio "$root" "$tmp/base.cpio"
    mv "$tmp/base.cpio" "$base"
    rm -rf "$tmp"
    trap - EXIT
fi
# Base archives of other versions of this script (another checkout) stay a day, in case one is still running; so do
# the leftovers of builds that were killed.
find "$cache" -mindepth 1 -maxdepth 1 \( -name 'base-*.cpio' -o -name '.base.*' -o -name '.kernel.*' \) \
    ! -name "${base##*/}" -mmin +1440 -exec rm -rf {} +
[ "$mode" = prepare ] && { echo "vm.sh: kernel $kver and $base are ready" >&2; exit 0; }

# ---- this run: its own files, appended to the base archive --------------------------------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/tbc-rdma-vm.XXXXXX")"
qemu_pid=""
stream_pid=""
# shellcheck disable=SC2317 # run by the trap
cleanup() {
    [ -n "$qemu_pid" ] && kill "$qemu_pid" 2>/dev/null
    [ -n "$stream_pid" ] && kill "$stream_pid" 2>/dev/null
    if [ "$keep" -eq 1 ]; then say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

run_script="$(realpath -s "$1")"
shift
[ -f "$run_script" ] || die "no script $run_script"
cp "$base" "$work/initrd"  # still under the lock: a builder never replaces it mid-copy
flock -u 9
root="$work/root"
mkdir -p "$root/tbc"
stage_dir "$root" "$PWD"
stage_file "$root" "$run_script"
for f in "$@"; do
    [ -e "$f" ] || die "no file $f"
    f="$(realpath -s "$f")"
    if [ -d "$f" ]; then
        stage_dir "$root" "$f"
        cp -a "$f/." "$root$(realpath "$f")/"
    else
        stage_program "$root" "$f"
    fi
done
# Paths go to the guest's sh as single-quoted words.
quote() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
{
    echo "TBC_RUN_DIR=$(quote "$PWD")"
    echo "TBC_RUN_SCRIPT=$(quote "$run_script")"
    printf 'set --'
    for f in "$@"; do printf ' %s' "$(quote "$f")"; done
    echo
} >"$root/tbc/run.env"
make_cpio "$root" "$work/run.cpio"
cat "$work/run.cpio" >>"$work/initrd"

accel=(-accel "tcg,thread=multi" -cpu max)
want_accel="${TBC_RDMA_VM_ACCEL:-}"
if [ "$want_accel" = kvm ] || { [ -z "$want_accel" ] && [ -w /dev/kvm ] && [ ! -e /sys/module/kvm_pvm ] &&
    grep -qwE 'vmx|svm' /proc/cpuinfo; }; then
    accel=(-accel kvm -cpu host)
fi
# mitigations=off and the clock options save about 0.5 s of boot under TCG.
cmdline="console=ttyS0 quiet panic=-1 rdinit=/init mitigations=off tsc=reliable no_timer_check audit=0 apparmor=0"
: >"$work/console.log"
: >"$work/output.log"
start=$(date +%s.%N)
qemu-system-x86_64 -M q35 -m "${TBC_RDMA_VM_MEM:-1024}" -smp "${TBC_RDMA_VM_CPUS:-2}" "${accel[@]}" -nodefaults -no-reboot -display none \
    -kernel "$kdir/vmlinux" -initrd "$work/initrd" \
    -append "$cmdline" \
    -serial "file:$work/console.log" -serial "file:$work/output.log" </dev/null >"$work/qemu.log" 2>&1 &
qemu_pid=$!
# The marker line is /init's, not the script's (it may follow output that has no newline at its end).
tail -n +1 -s 0.1 -f --pid="$qemu_pid" "$work/output.log" |
    sed -u -e '/^TBC-RDMA-EXIT [0-9]*$/d' -e 's/TBC-RDMA-EXIT [0-9]*$//' &
stream_pid=$!
timed_out=0
deadline=$(($(date +%s) + timeout))
while kill -0 "$qemu_pid" 2>/dev/null; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
        timed_out=1
        kill "$qemu_pid" 2>/dev/null
        break
    fi
    sleep 0.1
done
qemu_rc=0
wait "$qemu_pid" || qemu_rc=$?
qemu_pid=""
wait "$stream_pid" 2>/dev/null || true
stream_pid=""
end=$(date +%s.%N)

console_tail() {
    say "last lines of the guest console:"
    tail -n 30 "$work/console.log" | sed 's/^/    | /' >&2
    [ -s "$work/qemu.log" ] && sed 's/^/    qemu: /' "$work/qemu.log" >&2
    return 0
}
if [ "$timed_out" -eq 1 ]; then
    say "TIMEOUT: the guest was still running after ${timeout} s; QEMU killed"
    console_tail
    exit 124
fi
status="$(tr -d '\r' <"$work/output.log" | sed -n 's/.*TBC-RDMA-EXIT \([0-9]*\)$/\1/p' | tail -n 1)"
if [ -z "$status" ]; then
    say "the guest stopped (QEMU exit $qemu_rc) without reporting the script's exit status"
    console_tail
    exit 125
fi
boot="$(tr -d '\r' <"$work/console.log" | sed -n 's/^TBC-RDMA-START \([0-9.]*\).*/\1/p' | tail -n 1)"
say "$(basename "$run_script") exited $status; guest uptime at its start ${boot:-?} s, whole run" \
    "$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }') s ($kver, ${accel[1]%%,*})"
exit "$status"
