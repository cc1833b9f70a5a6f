#!/usr/bin/env bash
# Builds the Debian package ferry_VERSION_ARCH.deb (amd64 here) with dpkg-deb alone (no
# debhelper, no fakeroot: --root-owner-group), from this checkout:
#
#   tools/package.sh [--output DIR]        (default DIR: .build; prints the .deb's path last)
#
# The binary is a release build with the Swift runtime and Foundation linked in statically
# (swift build --static-swift-stdlib), so the target host needs no Swift toolchain; it still
# links libc, libstdc++, libgcc_s and libbpf dynamically, and the package depends on the
# Debian packages that hold them (looked up with dpkg, as dpkg-shlibdeps would). The build
# shares .build with `swift build -c release` but not its objects: SwiftPM compiles every
# module again for --static-swift-stdlib (different autolink entries), and that build then
# replaces .build/release/ferry. tools/test.sh builds this way from the start, so here it is
# up to date.
#
# The package holds:
#   /usr/bin/ferry
#   /lib/systemd/system/ferry.service   packaging/ferry.service, ExecStart= at /usr/bin/ferry
#   /etc/ferry/ferry.yaml               packaging/ferry.yaml, a conffile: the embedded default
#   /usr/share/man/man1/ferry.1.gz      tools/man-page.py, from the argument parser
#   bash and zsh completions            `ferry --generate-completion-script bash|zsh`
#   /usr/share/doc/ferry/               CONFIG.md, OPERATIONS.md, QEMU-LIBVIRT.md, the example config
# and packaging/debian/{postinst,prerm,postrm}: the system user and group `ferry` (and the
# group kvm if the host lacks it); the service is installed, not enabled (README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/lib/swift-toolchain.sh

say() { printf 'package.sh: %s\n' "$*"; }
die() { printf 'package.sh: ERROR: %s\n' "$*" >&2; exit 1; }

output=.build
while [[ $# -gt 0 ]]; do
    case "$1" in
        --output) [[ $# -ge 2 ]] || die "--output needs a directory"; output="$2"; shift 2 ;;
        --output=*) output="${1#*=}"; shift ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
        *) die "unknown option: $1 (usage: $0 [--output DIR])" ;;
    esac
done
for tool in dpkg-deb dpkg-query readelf strip gzip python3; do
    command -v "$tool" >/dev/null || die "$tool is missing (dpkg, binutils, gzip, python3)"
done
ferry_use_swift package.sh

say "building ferry (release, Swift runtime linked statically)"
swift build -c release --static-swift-stdlib --product ferry
binary="$(swift build -c release --static-swift-stdlib --show-bin-path)/ferry"

# The point of the package: no Swift library may be left to load from a toolchain.
needed=$(readelf -d "$binary" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
if swift_libs=$(grep -E '^lib(swift|Foundation|_Foundation|dispatch|BlocksRuntime)' <<<"$needed"); then
    die "$binary still needs Swift libraries: $(tr '\n' ' ' <<<"$swift_libs")"
fi

version=$("$binary" --version)
arch=$(dpkg --print-architecture)
name="ferry_${version}_${arch}"
stage="$output/deb/$name"
rm -rf "$stage"
mkdir -p "$stage/DEBIAN"
say "staging $name in $stage"

# --strip-debug keeps the symbol table, so a crash's backtrace still names functions.
install -d "$stage/usr/bin"
strip --strip-debug -o "$stage/usr/bin/ferry" "$binary"
chmod 0755 "$stage/usr/bin/ferry"

install -d "$stage/lib/systemd/system"
# The unit's opening comment is the by-hand installation, which the package replaces.
{
    echo "# The ferry package's unit: change it with \`systemctl edit ferry\` (docs: /usr/share/doc/ferry/OPERATIONS.md)."
    sed -e '1,/^\[Unit\]/{/^#/d}' -e 's|^ExecStart=/usr/local/bin/ferry |ExecStart=/usr/bin/ferry |' packaging/ferry.service
} > "$stage/lib/systemd/system/ferry.service"
grep -q '^ExecStart=/usr/bin/ferry run --config /etc/ferry/ferry.yaml$' "$stage/lib/systemd/system/ferry.service" \
    || die "packaging/ferry.service: no ExecStart=/usr/local/bin/ferry run --config /etc/ferry/ferry.yaml to point at /usr/bin"
chmod 0644 "$stage/lib/systemd/system/ferry.service"

install -D -m 0644 packaging/ferry.yaml "$stage/etc/ferry/ferry.yaml"
"$binary" check packaging/ferry.yaml >/dev/null || die "packaging/ferry.yaml does not pass ferry check"

# The page's date is the commit's, so one commit always gives the same page.
date=$(git log -1 --format=%cs 2>/dev/null || date -u +%F)
install -d "$stage/usr/share/man/man1"
python3 tools/man-page.py --date "$date" "$binary" | gzip -9n > "$stage/usr/share/man/man1/ferry.1.gz"

install -d "$stage/usr/share/bash-completion/completions" "$stage/usr/share/zsh/vendor-completions"
"$binary" --generate-completion-script bash > "$stage/usr/share/bash-completion/completions/ferry"
"$binary" --generate-completion-script zsh > "$stage/usr/share/zsh/vendor-completions/_ferry"

install -d "$stage/usr/share/doc/ferry"
install -m 0644 docs/CONFIG.md docs/OPERATIONS.md docs/QEMU-LIBVIRT.md docs/ferry.example.yaml "$stage/usr/share/doc/ferry/"

# Depends: for each library the binary names, the package that holds the file ldd resolves it
# to, with the minimum version that package's shlibs file asks for.
declare -A depends=()
while read -r soname path; do
    [[ -n "$path" ]] || die "ldd cannot resolve $soname for $binary"
    owner=""
    for candidate in "$path" "$(readlink -f "$path")" "/usr$path"; do
        owner=$(dpkg-query -S "$candidate" 2>/dev/null | head -n1 | cut -d: -f1) && [[ -n "$owner" ]] && break
    done
    [[ -n "$owner" ]] || die "no Debian package holds $path ($soname)"
    library="${soname%%.so.*}" soversion="${soname##*.so.}"
    relation=$(dpkg-query --control-show "$owner" shlibs 2>/dev/null \
        | awk -v l="$library" -v v="$soversion" '$1 == l && $2 == v { $1 = ""; $2 = ""; sub(/^ +/, ""); print; exit }')
    depends["$owner"]="${relation:-$owner}"
done < <(for soname in $needed; do
             ldd "$binary" | awk -v s="$soname" '
                 $1 == s && $2 == "=>" { print s, $3 }
                 substr($1, length($1) - length(s)) == "/" s { print s, $1 }' | head -n1
         done)
depends_line=$(printf '%s\n' "${depends[@]}" | sort -u | paste -sd, | sed 's/,/, /g')

installed_size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<EOF
Package: ferry
Version: $version
Architecture: $arch
Maintainer: Ferry maintainers <ferry@localhost>
Installed-Size: $installed_size
Depends: $depends_line, passwd
Recommends: systemd
Section: net
Priority: optional
Description: user-space layer-2 switch for vhost-user virtual machines
 Ferry is a vhost-user back-end: QEMU hands it a guest's virtio-net rings over a
 unix socket, and Ferry switches frames between them, TAP devices, AF_XDP and
 AF_PACKET uplinks (MAC learning, VLANs, flooding). The Swift runtime is linked
 in; no Swift toolchain is needed. The systemd unit runs it as user ferry with
 CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF and CAP_IPC_LOCK.
EOF
echo /etc/ferry/ferry.yaml > "$stage/DEBIAN/conffiles"
install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$stage/DEBIAN/"
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) > "$stage/DEBIAN/md5sums"

mkdir -p "$output"
deb="$output/$name.deb"
# zstd: 0.4 s of CPU where xz takes 40 (17 MB against 25 MB), and on the shared CI machine
# that is minutes. dpkg reads it from 1.21.18; Debian 12 has 1.21.22, and Depends: libc6
# (>= 2.36) asks for Debian 12 or newer anyway.
dpkg-deb --root-owner-group -Zzstd --build "$stage" "$deb" >/dev/null
say "built $deb ($(du -h "$deb" | cut -f1); Depends: $depends_line, passwd)"
echo "$deb"
