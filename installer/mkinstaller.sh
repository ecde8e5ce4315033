#!/usr/bin/env bash
# Builds the one-file Linux installer and the .deb from built programs.
# Called by the CMake target `installer` (installer/CMakeLists.txt); also by
# tests that need an installer of another version.
#
#   mkinstaller.sh --version V --out DIR --yamorid F --yamorictl F
#                  [--launcher F] --rules DIR [--keys DIR] [--no-deb]
#
# Writes DIR/yamori-installer.run (a POSIX sh header followed by a gzip'd
# tar payload; installer/header.sh describes the format) and
# DIR/yamori_V_ARCH.deb. The payload holds bin/yamorid, bin/yamorictl,
# bin/yamori-launcher (when given), rules/*.yar, keys/ (release public keys,
# when the directory exists), yamori.service.in and VERSION.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
version="" out="" yamorid="" yamorictl="" launcher="" rules="" keys="" deb=1
while [ $# -gt 0 ]; do
  case "$1" in
  --version) version=$2; shift ;;
  --out) out=$2; shift ;;
  --yamorid) yamorid=$2; shift ;;
  --yamorictl) yamorictl=$2; shift ;;
  --launcher) launcher=$2; shift ;;
  --rules) rules=$2; shift ;;
  --keys) keys=$2; shift ;;
  --no-deb) deb=0 ;;
  *) echo "mkinstaller: unknown argument $1" >&2; exit 64 ;;
  esac
  shift
done
for v in version out yamorid yamorictl rules; do
  if [ -z "${!v}" ]; then
    echo "mkinstaller: --$v is required" >&2
    exit 64
  fi
done
case "$version" in
*[!A-Za-z0-9.+~-]* | "") echo "mkinstaller: bad version $version" >&2; exit 64 ;;
esac

arch=$(dpkg --print-architecture 2>/dev/null || uname -m)
mkdir -p "$out"
work=$(mktemp -d "$out/.mkinstaller.XXXXXX")
trap 'rm -rf "$work"' EXIT
stage=$work/payload
mkdir -p "$stage/bin" "$stage/rules"

# Programs, stripped of debugging symbols (the build tree keeps them).
strip_copy() {
  cp "$1" "$2"
  if command -v strip >/dev/null 2>&1; then
    strip --strip-unneeded "$2" 2>/dev/null || true
  fi
  chmod 0755 "$2"
}
strip_copy "$yamorid" "$stage/bin/yamorid"
strip_copy "$yamorictl" "$stage/bin/yamorictl"
if [ -n "$launcher" ] && [ -x "$launcher" ]; then
  strip_copy "$launcher" "$stage/bin/yamori-launcher"
fi
find "$rules" -maxdepth 1 -type f \( -name '*.yar' -o -name '*.yara' \) -exec cp {} "$stage/rules/" \;
chmod 0644 "$stage"/rules/*
if [ -n "$keys" ] && [ -d "$keys" ] && [ -n "$(ls -A "$keys")" ]; then
  mkdir -p "$stage/keys"
  cp "$keys"/* "$stage/keys/"
  chmod 0644 "$stage"/keys/*
fi
cp "$here/yamori.service.in" "$stage/yamori.service.in"
printf '%s\n' "$version" >"$stage/VERSION"

# The Debian packages that provide the shared libraries the programs use
# (the installer adds them with apt-get when missing; the .deb depends on
# them). libc6 is always there.
needed=$(readelf -d "$stage"/bin/* 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sort -u)
deps=$(for n in $needed; do
  lib=$(ldd "$stage"/bin/* | awk -v n="$n" '$1 == n && $3 ~ /^\// {print $3; exit}')
  [ -n "$lib" ] || continue
  dpkg -S "$(readlink -f "$lib")" 2>/dev/null || dpkg -S "$lib" 2>/dev/null || true
done | sed 's/:.*//; s/,.*//' | grep -v '^libc6$' | sort -u | tr '\n' ' ' | sed 's/ $//')

# The payload: reproducible (sorted, owned by root, fixed times).
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$stage" -cf - . |
  gzip -9n >"$work/payload.tar.gz"
psize=$(stat -c %s "$work/payload.tar.gz")

sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@DEPS@|$deps|" \
  "$here/header.sh" >"$work/header.sh"
# The header ends with a newline; its size does not change when the
# fixed-width numbers are filled in.
hsize=$(stat -c %s "$work/header.sh")
sed -i -e "s/^YM_HEADER_SIZE=0000000000$/YM_HEADER_SIZE=$(printf %010d "$hsize")/" \
  -e "s/^YM_PAYLOAD_SIZE=0000000000$/YM_PAYLOAD_SIZE=$(printf %010d "$psize")/" "$work/header.sh"
[ "$(stat -c %s "$work/header.sh")" = "$hsize" ] || { echo "mkinstaller: header size changed" >&2; exit 1; }
cat "$work/header.sh" "$work/payload.tar.gz" >"$work/yamori-installer.run"
chmod 0755 "$work/yamori-installer.run"
mv -f "$work/yamori-installer.run" "$out/yamori-installer.run"
echo "mkinstaller: $out/yamori-installer.run ($(stat -c %s "$out/yamori-installer.run") bytes, version $version)"

[ "$deb" = 1 ] || exit 0
command -v dpkg-deb >/dev/null 2>&1 || { echo "mkinstaller: no dpkg-deb, .deb not built" >&2; exit 0; }

# The .deb: the same layout the installer makes, for fleets that use a
# package manager. Enrollment: put the token in /etc/yamori/enroll-token
# (mode 0600) or in YAMORI_TOKEN before installing; postinst enrolls once.
root=$work/deb
vdir=$root/opt/yamori/versions/$version
mkdir -p "$vdir/bin" "$root/opt/yamori/bin" "$root/usr/bin" "$root/lib/systemd/system" "$root/DEBIAN"
cp "$stage/bin/yamorid" "$stage/bin/yamorictl" "$vdir/bin/"
cp -R "$stage/rules" "$vdir/rules"
[ -d "$stage/keys" ] && cp -R "$stage/keys" "$vdir/keys"
if [ -x "$stage/bin/yamori-launcher" ]; then
  cp "$stage/bin/yamori-launcher" "$root/opt/yamori/bin/"
  exec_line="/opt/yamori/bin/yamori-launcher -- --config /etc/yamori/agent.json"
else
  exec_line="/opt/yamori/current/bin/yamorid --config /etc/yamori/agent.json"
fi
ln -s "versions/$version" "$root/opt/yamori/current"
ln -s current/rules "$root/opt/yamori/rules"
ln -s /opt/yamori/current/bin/yamorictl "$root/usr/bin/yamorictl"
sed "s|@EXEC@|$exec_line|" "$stage/yamori.service.in" >"$root/lib/systemd/system/yamori.service"
depends=$(printf '%s' "$deps" | sed 's/ /, /g')
cat >"$root/DEBIAN/control" <<EOF
Package: yamori
Version: $version
Architecture: $arch
Maintainer: Yamori project <yamori@localhost>
Depends: ${depends:-libc6}
Section: admin
Priority: optional
Homepage: https://github.com/yamori
Description: Yamori endpoint protection agent
 Watches file and process activity through the kernel (fanotify, proc
 connector), detects and blocks malware with YARA rules, and reports to a
 Yamori console. Enroll with YAMORI_TOKEN or /etc/yamori/enroll-token.
EOF
cat >"$root/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
  mkdir -p /etc/yamori /var/lib/yamori
  chmod 0700 /var/lib/yamori
  if [ ! -f /etc/yamori/agent.json ]; then
    # In a container the kernel gives no process events: that sensor is off.
    sensors=""
    if /opt/yamori/current/bin/yamorictl preflight 2>/dev/null | grep -q '^proc_connector	warn'; then
      sensors=',\n  "sensors": {"process": false}'
    fi
    printf '{\n  "rules": {"dirs": ["/opt/yamori/current/rules"]}'"$sensors"'\n}\n' >/etc/yamori/agent.json
  fi
  if [ ! -f /var/lib/yamori/identity.json ]; then
    tok=${YAMORI_TOKEN:-}
    if [ -z "$tok" ] && [ -f /etc/yamori/enroll-token ]; then
      tok=$(head -n 1 /etc/yamori/enroll-token)
    fi
    if [ -n "$tok" ]; then
      YAMORI_TOKEN=$tok /opt/yamori/current/bin/yamorictl enroll || echo "yamori: enrollment failed; run: YAMORI_TOKEN=... yamorictl enroll" >&2
    fi
  fi
  rm -f /etc/yamori/enroll-token
  if [ -d /run/systemd/system ]; then
    systemctl daemon-reload || true
    systemctl enable yamori.service || true
    systemctl restart yamori.service || true
  fi
fi
EOF
cat >"$root/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ -d /run/systemd/system ] && [ "$1" = remove ]; then
  systemctl disable --now yamori.service || true
fi
EOF
cat >"$root/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ "$1" = purge ]; then
  rm -rf /var/lib/yamori /etc/yamori
fi
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload || true
fi
EOF
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"
dpkg-deb --root-owner-group -Zgzip --build "$root" "$out/yamori_${version}_${arch}.deb" >/dev/null
echo "mkinstaller: $out/yamori_${version}_${arch}.deb"
