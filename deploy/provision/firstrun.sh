#!/bin/sh
# kitt: first-boot provisioning of a Raspberry Pi OS (Bookworm or later) card,
# written onto the boot partition by `cargo xtask provision sd`.
# The kernel command line runs it once, as root
# (`systemd.run=/boot/firmware/firstrun.sh systemd.run_success_action=reboot
# systemd.unit=kernel-command-line.target`, the mechanism Raspberry Pi Imager uses), with
# the root file system writable and before the network is up; then the Pi reboots and the
# kitt-agent services start, enrollment first. Everything it prints goes to
# /boot/firmware/kitt-firstrun.log, readable in a card reader.
set +e
BOOT=/boot/firmware
exec >>"$BOOT/kitt-firstrun.log" 2>&1
echo "kitt firstrun: started $(date -u '+%Y-%m-%d %H:%M:%S UTC')"

# Raspberry Pi Imager's own customisation (user, SSH, Wi-Fi, locale) when the card had one:
# `provision sd` moved its firstrun.sh here. It ends by removing /boot/firmware/firstrun.sh
# and the systemd.run arguments, which this script does anyway.
if [ -f "$BOOT/kitt/imager-firstrun.sh" ]; then
    /bin/bash "$BOOT/kitt/imager-firstrun.sh"
    echo "kitt firstrun: Raspberry Pi Imager's settings applied (exit status $?)"
    rm -f "$BOOT/kitt/imager-firstrun.sh"
fi

if sh "$BOOT/kitt/install.sh" "$BOOT/kitt"; then
    rm -rf "$BOOT/kitt"
    echo "kitt firstrun: done; kitt-agent enrolls and starts after the reboot"
else
    # The secrets already left the card (install.sh moves them first); the package stays
    # so that `sudo sh /boot/firmware/kitt/install.sh /boot/firmware/kitt --start` can retry.
    echo "kitt firstrun: FAILED (see above); retry with: sudo sh $BOOT/kitt/install.sh $BOOT/kitt --start"
fi

# Run once: off the kernel command line, and gone.
rm -f "$BOOT/firstrun.sh"
sed -i 's| systemd.run.*||g' "$BOOT/cmdline.txt"
echo "kitt firstrun: finished $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
exit 0
