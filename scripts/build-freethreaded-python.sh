#!/usr/bin/env bash
# Build a free-threaded CPython (./configure --disable-gil) for CI to run oddjob's tests on.
#
# Usage: scripts/build-freethreaded-python.sh [--tsan] [--prefix DIR]
#   --tsan        also --with-thread-sanitizer, compiled with clang (see TSAN_CC below)
#   --prefix DIR  install here (default: $ODDJOB_PYTHON_CACHE/<version>t[-tsan],
#                 ODDJOB_PYTHON_CACHE defaulting to /var/cache/oddjob-python)
# The last line of stdout is the interpreter's path; everything else goes to stderr:
#   PY=$(bash scripts/build-freethreaded-python.sh | tail -n 1)
# A --tsan build wants TSAN_OPTIONS="$(cat "$PREFIX/share/oddjob/tsan-options")" to run
# (CPython's suppressions for the free-threaded build, and the symbolizer).
#
# The source is CPython's upstream tarball as Debian ships it (the orig tarball of the
# python3.X source package), fetched with apt-get source from the Debian mirror this
# machine already uses. Debian's patches are not applied.
#
# Environment:
#   ODDJOB_PYTHON_VERSION  upstream version to build (default: PINNED_VERSION below), or
#                          "newest": the newest final 3.13.x/3.14.x the mirror serves
#   ODDJOB_PYTHON_CACHE    where prefixes, sources and logs are kept between runs
#   ODDJOB_DEBIAN_MIRROR   Debian mirror URL (default: the one in this machine's sources)
#   TSAN_CC                compiler for --tsan (default: clang-19, from Debian)
#
# A prefix whose stamp matches (version, tarball sha256, configure options) and whose
# interpreter still runs is reused at once, without touching apt. apt is used only with
# a temporary sources file and a private lists dir, so /var/lib/apt/lists is untouched
# and no second "apt-get update" is needed to restore it.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive LC_ALL=C

# The newest final release the Debian mirror served when this was written (sid lists a
# 3.13.18 and 3.14.9/3.14.10 too, but their files are not on the mirror). Pinning it
# makes the cache key known without asking apt; the sha256 is checked on every download.
PINNED_VERSION=3.13.15
PINNED_SHA256=1e66a7945a48390ee4c2a4268a0e4185884059a13c4aab6d148aa208deea4a76
WANT=${ODDJOB_PYTHON_VERSION:-$PINNED_VERSION}
CACHE=${ODDJOB_PYTHON_CACHE:-/var/cache/oddjob-python}
TSAN_CC=${TSAN_CC:-clang-19}
SRC_LIST=/etc/apt/sources.list.d/oddjob-cpython-src.list
BUILD_DEPS=(build-essential pkg-config xz-utils libssl-dev zlib1g-dev libffi-dev libbz2-dev
    liblzma-dev libsqlite3-dev libreadline-dev libncurses-dev uuid-dev libgdbm-dev
    libgdbm-compat-dev libzstd-dev)

say() { printf 'build-freethreaded-python: %s\n' "$*" >&2; }
die() { printf 'build-freethreaded-python: ERROR: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2; }

TSAN=0
PREFIX=""
while (($#)); do
    case $1 in
        --tsan) TSAN=1 ;;
        --prefix) (($# >= 2)) || die "--prefix needs a directory"; PREFIX=$2; shift ;;
        --prefix=*) PREFIX=${1#--prefix=} ;;
        -h | --help) usage; exit 0 ;;
        *) usage; die "unknown argument: $1" ;;
    esac
    shift
done
((EUID == 0)) || die "run as root (it installs build dependencies with apt-get)"
[[ $WANT == newest || $WANT =~ ^3\.1[34]\.[0-9]+$ ]] \
    || die "ODDJOB_PYTHON_VERSION must be 3.13.N, 3.14.N or 'newest', not '$WANT'"
# The pin's sha256 only applies to the pinned version.
[[ $WANT == "$PINNED_VERSION" ]] || PINNED_SHA256=""

SUFFIX=t
((TSAN)) && SUFFIX=t-tsan
mkdir -p "$CACHE/src" "$CACHE/logs"

# --- cleanup: always remove the temporary apt source and our scratch dirs -------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/oddjob-python.XXXXXX")
chmod 755 "$TMP"  # apt downloads as the _apt user
STAGE=""  # make install's DESTDIR, beside the prefix so that moving it is a rename
cleanup() {
    rm -f "$SRC_LIST"
    rm -rf "$TMP" ${STAGE:+"$STAGE"}
}
trap cleanup EXIT
trap 'exit 130' INT TERM
rm -f "$SRC_LIST"  # left behind by a run that was killed (SIGKILL skips the trap)

# --- helpers -----------------------------------------------------------------------------
configure_args() {  # the options a prefix is built with; part of the cache key
    local -a a=(--disable-gil "--prefix=$PREFIX")
    ((TSAN)) && a+=(--with-thread-sanitizer "CC=$TSAN_CC" "CXX=${TSAN_CC/clang/clang++}")
    printf '%s\n' "${a[@]}"
}

stamp_key() {  # $1 version, $2 sha256
    printf 'version=%s\nsha256=%s\nconfigure=%s\n' "$1" "$2" "$(configure_args | paste -sd' ')"
}

interp() { printf '%s/bin/python%st\n' "$PREFIX" "${1%.*}"; }

# What a TSan build runs with: CPython's own suppressions, and an explicit symbolizer
# (the runtime does not take /usr/bin/llvm-symbolizer from PATH here: no file:line).
tsan_options() {
    printf 'suppressions=%s external_symbolizer_path=/usr/lib/llvm-%s/bin/llvm-symbolizer' \
        "$PREFIX/share/oddjob/tsan-suppressions.txt" "${TSAN_CC#clang-}"
}
tsan_env() {  # $1: extra options
    if ((TSAN)); then
        TSAN_OPTIONS="$(tsan_options) ${1:-}"
        export TSAN_OPTIONS
    fi
}

quick_check() {  # $1 interpreter: it runs, without the GIL, with the modules pip needs
    [[ -x $1 ]] || return 1
    (tsan_env; "$1" -c 'import sys, ssl, zlib, ctypes, lzma, sqlite3
sys.exit(sys._is_gil_enabled())') >/dev/null 2>&1
}

# Reuse the prefix if its stamp (minus the build date) matches and it still works.
cached() {  # $1 version, $2 sha256 ("" = whatever the stamp says)
    local stamp=$PREFIX/.oddjob-python-stamp py
    py=$(interp "$1")
    [[ -f $stamp ]] || return 1
    local sha=$2
    [[ -n $sha ]] || sha=$(sed -n 's/^sha256=//p' "$stamp")
    [[ $(head -n 3 "$stamp") == "$(stamp_key "$1" "$sha")" ]] || return 1
    quick_check "$py" || { say "stamp in $PREFIX matches, but $py does not run: rebuilding"; return 1; }
    say "cached: $py ($(sed -n 's/^debian_source=//p' "$stamp"), built $(sed -n 's/^built=//p' "$stamp"))"
    return 0
}

set_prefix() {  # $1 version
    if [[ -z $PREFIX ]]; then
        PREFIX=$CACHE/$1$SUFFIX
    fi
    PREFIX=$(realpath -m "$PREFIX")
}

# The Debian archive URL from this machine's own sources (one-line and deb822 formats).
debian_mirror() {
    if [[ -n ${ODDJOB_DEBIAN_MIRROR:-} ]]; then echo "${ODDJOB_DEBIAN_MIRROR%/}"; return; fi
    local url
    url=$({
        grep -hs '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
            | sed -E 's/\[[^]]*\]//' | awk '{print $2}'
        grep -hs '^[[:space:]]*URIs:' /etc/apt/sources.list.d/*.sources | sed 's/^[[:space:]]*URIs://' | tr ' ' '\n'
    } | grep -E '^(https?|file)://[^ ]*/debian/?$' | head -n 1 || true)
    url=${url:-http://deb.debian.org/debian}
    echo "${url%/}"
}

APT_OPTS=()
apt_src_update() {  # fetch trixie and sid Sources into a private lists dir
    local mirror
    mirror=$(debian_mirror)
    say "adding $SRC_LIST (deb-src $mirror trixie sid main), removed again on exit"
    printf 'deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n' \
        "$mirror" trixie "$mirror" sid >"$SRC_LIST"
    mkdir -p "$TMP/lists/partial"
    APT_OPTS=(-o "Dir::Etc::sourcelist=$SRC_LIST" -o Dir::Etc::sourceparts=-
        -o "Dir::State::Lists=$TMP/lists" -o APT::Get::List-Cleanup=0)
    apt-get -q "${APT_OPTS[@]}" update >"$TMP/apt-update.log" 2>&1 \
        || { cat "$TMP/apt-update.log" >&2; die "apt-get update of the deb-src lists failed"; }
}

# "upstream-version source-package debian-version" for every final 3.13.x/3.14.x listed,
# newest first.
candidates() {
    local pkg
    for pkg in python3.14 python3.13; do
        apt-cache "${APT_OPTS[@]}" showsrc "$pkg" 2>/dev/null \
            | awk -v want="$pkg" '/^Package: /{p=$2} /^Version: /{if (p == want) print p, $2}'
    done | while read -r pkg ver; do
        local up=${ver#*:}
        up=${up%-*}
        [[ $up =~ ^3\.1[34]\.[0-9]+$ ]] && echo "$up $pkg $ver"
    done | sort -u | sort -t' ' -k1,1Vr -k3,3Vr
}

dsc_sha256() {  # $1 .dsc, $2 file name: that file's sha256 in the .dsc
    awk -v f="$2" '/^Checksums-Sha256:/{s=1; next} s && /^[^ ]/{s=0} s && $3 == f {print $1}' "$1"
}

# Verify a downloaded or cached orig tarball against its .dsc (and the pin, if any).
verify() {  # $1 .dsc, $2 orig tarball, $3 expected sha256 or ""
    local want got
    want=$(dsc_sha256 "$1" "$(basename "$2")")
    [[ -n $want ]] || die "$(basename "$1") lists no Checksums-Sha256 entry for $(basename "$2")"
    got=$(sha256sum "$2" | awk '{print $1}')
    [[ $got == "$want" ]] || die "sha256 MISMATCH for $(basename "$2"): file $got, .dsc says $want"
    [[ -z $3 || $got == "$3" ]] || die "sha256 MISMATCH for $(basename "$2"): file $got, pinned $3"
    echo "$got"
}

# Sets VERSION, PKG, DEBVER, ORIG, SHA256. Uses a cached verified tarball when there is
# one, else downloads the newest candidate whose files the mirror really has.
VERSION="" PKG="" DEBVER="" ORIG="" SHA256=""
cached_source() {  # $1 upstream version: use $CACHE/src's copy if there is one
    local pkg=python${1%.*} dscs orig sha
    dscs=("$CACHE/src/${pkg}_$1"-*.dsc)
    orig=$CACHE/src/${pkg}_$1.orig.tar.xz
    [[ -f ${dscs[0]} && -f $orig ]] || return 1
    # A damaged cached copy is dropped and downloaded again (where a mismatch is fatal).
    sha=$(sha256sum "$orig" | awk '{print $1}')
    if [[ $sha != "$(dsc_sha256 "${dscs[0]}" "$(basename "$orig")")" ]] \
        || [[ -n $PINNED_SHA256 && $sha != "$PINNED_SHA256" ]]; then
        say "cached $(basename "$orig") does not match its .dsc or the pin: downloading it again"
        rm -f "$orig" "${dscs[@]}"
        return 1
    fi
    ORIG=$orig SHA256=$sha
    VERSION=$1 PKG=$pkg DEBVER=$(basename "${dscs[0]}" .dsc)
    DEBVER=${DEBVER#"${pkg}_"}
    say "using cached source $ORIG (sha256 $SHA256 matches its .dsc, from $pkg $DEBVER)"
}
get_source() {
    local up pkg ver dsc dl
    if [[ $WANT != newest ]] && cached_source "$WANT"; then return; fi
    apt_src_update
    candidates >"$TMP/candidates"
    [[ -s $TMP/candidates ]] || die "the mirror lists no python3.13/python3.14 source package"
    say "listed: $(awk '{print $3}' "$TMP/candidates" | paste -sd' ')"
    dl=$TMP/dl
    mkdir -p "$dl" && chown _apt "$dl" 2>/dev/null || true
    while read -r up pkg ver; do
        [[ $WANT == newest || $WANT == "$up" ]] || continue
        cached_source "$up" && return  # downloaded by an earlier run
        say "trying apt-get source --download-only $pkg=$ver"
        if (cd "$dl" && apt-get -q "${APT_OPTS[@]}" source --download-only "$pkg=$ver") \
            >"$TMP/apt-source.log" 2>&1; then
            dsc=$dl/${pkg}_${ver#*:}.dsc
            ORIG=$dl/${pkg}_$up.orig.tar.xz
            [[ -f $dsc && -f $ORIG ]] || die "apt-get source gave no $(basename "$dsc") / $(basename "$ORIG")"
            SHA256=$(verify "$dsc" "$ORIG" "$PINNED_SHA256") || exit 1
            chown root:root "$dsc" "$ORIG"
            mv -f "$dsc" "$ORIG" "$CACHE/src/"
            ORIG=$CACHE/src/$(basename "$ORIG")
            VERSION=$up PKG=$pkg DEBVER=$ver
            say "downloaded $(basename "$ORIG"), sha256 $SHA256 matches $(basename "$dsc")"
            return
        fi
        say "  not served: $(grep -E '^(E|Err):' "$TMP/apt-source.log" | head -n 1)"
    done <"$TMP/candidates"
    if [[ $WANT == newest ]]; then
        die "none of the listed python3.13/3.14 sources could be downloaded"
    fi
    die "the mirror does not serve CPython $WANT's source; set ODDJOB_PYTHON_VERSION=newest" \
        "(the mirror lists $(awk '{print $1}' "$TMP/candidates" | sort -uVr | paste -sd' '), not all served) and update PINNED_VERSION"
}

install_build_deps() {
    local -a want=("${BUILD_DEPS[@]}") missing=()
    # clang's TSan runtime and its symbolizer are packaged apart from the compiler.
    ((TSAN)) && want+=("$TSAN_CC" "libclang-rt-${TSAN_CC#clang-}-dev" "llvm-${TSAN_CC#clang-}")
    local p
    for p in "${want[@]}"; do
        dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    say "installing build dependencies: ${missing[*]}"
    local -a inst=(apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}")
    # The machine's lists may be old or absent: update them only if the install needs it.
    "${inst[@]}" >"$TMP/apt-install.log" 2>&1 \
        || { apt-get -q -o DPkg::Lock::Timeout=600 update >&2 && "${inst[@]}" >"$TMP/apt-install.log" 2>&1; } \
        || { tail -n 30 "$TMP/apt-install.log" >&2; die "apt-get install ${missing[*]} failed"; }
}

run_logged() {  # $1 step name, rest: command; full output in the log, its tail on failure
    local step=$1
    shift
    say "$step (log: $LOG)"
    printf '\n==== %s: %s\n' "$step" "$*" >>"$LOG"
    "$@" >>"$LOG" 2>&1 || { tail -n 40 "$LOG" >&2; die "$step failed; full log: $LOG"; }
}

build() {
    local src=$TMP/src stage=$PREFIX.stage.$$
    STAGE=$stage
    LOG=$CACHE/logs/$VERSION$SUFFIX.log
    : >"$LOG"
    mkdir -p "$src"
    tar -xJf "$ORIG" -C "$src" --strip-components=1
    grep -q "PY_VERSION[[:space:]]*\"$VERSION\"" "$src/Include/patchlevel.h" \
        || die "$(basename "$ORIG") is not CPython $VERSION (see Include/patchlevel.h)"
    local -a args
    mapfile -t args < <(configure_args)
    # A TSan-built python runs during the build (and compileall during install): keep its
    # reports in a log instead of failing the build on them.
    if ((TSAN)); then
        export TSAN_OPTIONS="suppressions=$src/Tools/tsan/suppressions_free_threading.txt log_path=$CACHE/logs/$VERSION$SUFFIX.tsan exitcode=0"
    fi
    cd "$src"
    run_logged "configure ${args[*]}" ./configure "${args[@]}"
    run_logged "make -j$(nproc)" make -j"$(nproc)"
    rm -rf "$stage"
    run_logged "make install (staged)" make install DESTDIR="$stage"
    [[ -d $stage$PREFIX ]] || die "make install put nothing in $stage$PREFIX"
    mkdir -p "$stage$PREFIX/share/oddjob"
    cp Tools/tsan/suppressions_free_threading.txt "$stage$PREFIX/share/oddjob/tsan-suppressions.txt"
    ((TSAN)) && tsan_options >"$stage$PREFIX/share/oddjob/tsan-options"
    cd /
    # Swap the new prefix in (same filesystem: a rename).
    rm -rf "$PREFIX"
    mv "$stage$PREFIX" "$PREFIX"
    rm -rf "$stage"
    date -u +%FT%TZ >"$PREFIX/.oddjob-python-built"
    unset TSAN_OPTIONS
}

check() {  # the acceptance checks; the stamp is written only when they pass
    local py=$1
    tsan_env "log_path=$CACHE/logs/$VERSION$SUFFIX.check.tsan exitcode=0"
    say "checking $py"
    "$py" - <<'EOF' >&2 || die "$py failed its checks (see above)"
import sys, sysconfig
import ssl, zlib, ctypes, lzma, bz2, sqlite3, uuid, readline, threading  # what pip, venv and tests need
assert sysconfig.get_config_var("Py_GIL_DISABLED") == 1, "not a --disable-gil build"
assert not sys._is_gil_enabled(), "the GIL is enabled"
t = threading.Thread(target=lambda: None); t.start(); t.join()
print(f"  {sys.version.splitlines()[0]}; GIL enabled: {sys._is_gil_enabled()}; {ssl.OPENSSL_VERSION}")
EOF
    if ((TSAN)); then
        "$py" -c 'import sysconfig; assert "-fsanitize=thread" in sysconfig.get_config_var("PY_CFLAGS")' \
            || die "$py is not built with TSan"
    fi
    "$py" -m ensurepip --default-pip >"$TMP/ensurepip.log" 2>&1 \
        || { cat "$TMP/ensurepip.log" >&2; die "python -m ensurepip failed"; }
    "$py" -m venv "$TMP/venv" || die "python -m venv failed"
    # pip from PyPI proves ssl and the venv's pip work for real.
    "$TMP/venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >&2 \
        || die "pip install --upgrade pip (from PyPI) failed in a venv of $py"
    say "  venv + pip from PyPI: $("$TMP/venv/bin/python" -m pip --version | cut -d' ' -f1-2)"
    rm -rf "$TMP/venv"
}

lock_prefix() {  # and only ever replace a prefix this script made (or an empty one)
    mkdir -p "$(dirname "$PREFIX")"
    exec 9>"$PREFIX.lock"
    flock 9  # another run building the same prefix: wait for it, then reuse its result
    if [[ -e $PREFIX && ! -f $PREFIX/.oddjob-python-built ]] && [[ -n $(ls -A "$PREFIX") ]]; then
        die "$PREFIX exists and was not made by this script; refusing to replace it"
    fi
}

# --- main --------------------------------------------------------------------------------
if [[ $WANT != newest ]]; then
    set_prefix "$WANT"
    lock_prefix
    if cached "$WANT" "$PINNED_SHA256"; then interp "$WANT"; exit 0; fi
    get_source
else
    get_source
    set_prefix "$VERSION"
    lock_prefix
    if cached "$VERSION" "$SHA256"; then interp "$VERSION"; exit 0; fi
fi
rm -f "$SRC_LIST"  # apt is done with it; the trap removes it too

install_build_deps
START=$SECONDS
rm -f "$PREFIX/.oddjob-python-stamp"
build
PY=$(interp "$VERSION")
check "$PY"
{
    stamp_key "$VERSION" "$SHA256"
    echo "debian_source=$PKG $DEBVER"
    echo "built=$(date -u +%FT%TZ)"
} >"$PREFIX/.oddjob-python-stamp"
say "built CPython $VERSION ($SUFFIX) in $((SECONDS - START)) s: $PY"
((TSAN)) && say "run it with TSAN_OPTIONS=\"\$(cat $PREFIX/share/oddjob/tsan-options)\""
echo "$PY"
