#!/bin/sh
# Installs, configures and enrolls kitt-agent on a Raspberry Pi from a provisioning bundle,
# as root. `cargo xtask provision` writes the bundle and runs this script: from the SD card
# on first boot (firstrun.sh), or over SSH on a running Pi (with --start).
#
#   sh install.sh <bundle-dir> [--start]
#
# The bundle holds kitt-agent_<version>_<arch>.deb and, each optional: agent.toml (with
# the printers' access codes), enroll-token, enroll.env (KITT_HUB=host:port), hostname.
# Secrets are moved first into /etc/kitt-agent with mode 0600 (owner kitt once the package
# has created that user), and the bundle's copies overwritten and deleted, so that they
# leave the boot partition (FAT, readable by anyone holding the card) even if a later step
# fails. Nothing secret is printed. Running it again with the same bundle is harmless.
# Without --start, or without a running systemd (first boot's early stage, a chroot), the
# services are only enabled: they start at the next boot.
set -eu

say() { echo "kitt-agent install: $*"; }
fail() { say "error: $*" >&2; exit 1; }

[ $# -ge 1 ] || fail "usage: install.sh <bundle-dir> [--start]"
BUNDLE=$1
START=${2:-}
ETC=/etc/kitt-agent
[ "$(id -u)" = 0 ] || fail "run as root (sudo sh install.sh ...)"
[ -d "$BUNDLE" ] || fail "$BUNDLE is not a directory"

set -- "$BUNDLE"/kitt-agent_*.deb
[ $# -eq 1 ] && [ -f "$1" ] || fail "$BUNDLE must hold exactly one kitt-agent_*.deb"
DEB=$1
ARCH=$(dpkg --print-architecture)
DEB_ARCH=$(dpkg-deb --field "$DEB" Architecture)
[ "$ARCH" = "$DEB_ARCH" ] ||
    fail "$(basename "$DEB") is for $DEB_ARCH but this system is $ARCH; build it with cargo xtask dist agent --target <the matching triple>"

# 1. Secrets and configuration, before anything can fail.
umask 077
install -d -m 0750 "$ETC"
take() { # <bundle file> <mode>: into /etc/kitt-agent, and out of the bundle
    [ -f "$BUNDLE/$1" ] || return 0
    install -m "$2" "$BUNDLE/$1" "$ETC/$1"
    shred --remove "$BUNDLE/$1" 2>/dev/null || rm -f "$BUNDLE/$1"
    say "$ETC/$1 written (mode $2)"
}
take agent.toml 0600
take enroll-token 0600
take enroll.env 0600

# 2. The host name (Raspberry Pi OS's own helper when present, as Raspberry Pi Imager does).
if [ -f "$BUNDLE/hostname" ]; then
    NEW=$(tr -d ' \t\r\n' <"$BUNDLE/hostname")
    OLD=$(tr -d ' \t\r\n' </etc/hostname 2>/dev/null || true)
    if [ -x /usr/lib/raspberrypi-sys-mods/imager_custom ]; then
        /usr/lib/raspberrypi-sys-mods/imager_custom set_hostname "$NEW"
    else
        echo "$NEW" >/etc/hostname
        chmod 0644 /etc/hostname
        if [ -n "$OLD" ] && grep -q "^127\.0\.1\.1[[:space:]]" /etc/hosts 2>/dev/null; then
            sed -i "s/^127\.0\.1\.1[[:space:]].*/127.0.1.1\t$NEW/" /etc/hosts
        else
            printf '127.0.1.1\t%s\n' "$NEW" >>/etc/hosts
        fi
        if [ -d /run/systemd/system ] && command -v hostnamectl >/dev/null; then
            hostnamectl set-hostname "$NEW" || true
        fi
    fi
    rm -f "$BUNDLE/hostname"
    say "host name set to $NEW"
fi

# 3. The package: the kitt user, the units, /var/lib/kitt-agent, and the secrets made the
#    kitt user's (postinst). It depends on libc6 and libgcc-s1 only: no network needed.
dpkg --install "$DEB"

# 4. A token for an agent that is already enrolled is not used.
if [ -f "$ETC/enroll-token" ] && [ -f /var/lib/kitt-agent/identity.toml ]; then
    shred --remove "$ETC/enroll-token" 2>/dev/null || rm -f "$ETC/enroll-token"
    rm -f "$ETC/enroll.env"
    say "already enrolled (/var/lib/kitt-agent/identity.toml exists): the token was not used and is deleted; to enroll again, stop kitt-agent and remove /var/lib/kitt-agent/identity.toml first"
fi

# 5. The configuration, checked by the agent itself, as its own user.
runuser -u kitt -- /usr/bin/kitt-agent validate --config "$ETC/agent.toml"

# 6. Start now when asked and possible; otherwise at the next boot.
if [ "$START" = "--start" ] && [ -d /run/systemd/system ]; then
    if [ -f "$ETC/enroll-token" ]; then
        say "enrolling with the hub"
        systemctl start kitt-agent-enroll.service ||
            fail "enrollment failed (it retries every 30 s); see journalctl -u kitt-agent-enroll"
    fi
    systemctl restart kitt-agent.service
    systemctl --no-pager --lines=5 status kitt-agent.service || true
else
    say "installed; the services start at the next boot"
fi
