# Sourced by tools/run.sh, tools/test.sh, tools/install-deps.sh and tools/package.sh:
# finds a Swift toolchain (>= 6.1, what Package.swift's tools version asks for) and
# puts it on this script's PATH. Swift is not a Debian package: it is installed by
# hand (a swift.org tarball, or swiftly), so we look where those put it.
#
# Looked for, in order: `swift` on PATH, $SWIFT_TOOLCHAIN/usr/bin, /opt/swift/usr/bin,
# /usr/share/swift/usr/bin, ~/.local/share/swiftly/bin.

ferry_swift_minimum="6.1"

# Prints the directory holding a `swift` that runs, or nothing.
ferry_swift_dir() {
    if command -v swift >/dev/null 2>&1 && swift --version >/dev/null 2>&1; then
        dirname "$(command -v swift)"
        return
    fi
    local d
    for d in ${SWIFT_TOOLCHAIN:+"$SWIFT_TOOLCHAIN/usr/bin"} /opt/swift/usr/bin /usr/share/swift/usr/bin \
             "${HOME:-/root}/.local/share/swiftly/bin"; do
        if [[ -x "$d/swift" ]] && "$d/swift" --version >/dev/null 2>&1; then
            printf '%s\n' "$d"
            return
        fi
    done
}

# "6.3.1" from `swift --version`, or nothing.
ferry_swift_version() {
    swift --version 2>&1 | grep -m1 -o 'Swift version [0-9][0-9.]*' | awk '{print $3}'
}

# Is version $1 at least $2? (dotted numbers)
ferry_version_at_least() {
    [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" == "$2" ]]
}

# Finds the toolchain, puts it on PATH for the calling script and checks its
# version; on failure prints what to do and returns 1. $1 is the prefix of messages.
ferry_use_swift() {
    local who="$1" dir version
    dir=$(ferry_swift_dir)
    if [[ -z "$dir" ]]; then
        printf '%s: ERROR: no Swift toolchain found (looked on PATH, in $SWIFT_TOOLCHAIN/usr/bin, /opt/swift/usr/bin, /usr/share/swift/usr/bin, ~/.local/share/swiftly/bin).\n' "$who" >&2
        printf '%s: Ferry needs Swift >= %s: install it from https://www.swift.org/install/linux/ (a tarball unpacked in /opt/swift, or swiftly), or set SWIFT_TOOLCHAIN to the directory that holds usr/bin/swift.\n' "$who" "$ferry_swift_minimum" >&2
        return 1
    fi
    case ":$PATH:" in
        *":$dir:"*) ;;
        *) export PATH="$dir:$PATH" ;;
    esac
    version=$(ferry_swift_version)
    if [[ -z "$version" ]] || ! ferry_version_at_least "$version" "$ferry_swift_minimum"; then
        printf '%s: ERROR: %s/swift is Swift %s; Ferry needs Swift >= %s.\n' "$who" "$dir" "${version:-(unknown)}" "$ferry_swift_minimum" >&2
        return 1
    fi
}
