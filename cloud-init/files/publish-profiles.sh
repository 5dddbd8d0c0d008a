#!/bin/sh
# Written by mkheadnode. Copy each install profile from the read-only share
# (/etc/moc/profiles/<name>/) to /var/lib/tftpboot/<name>/, where TFTP and HTTP serve it.
# In *.cfg files, @HEADNODE@ becomes this headnode's VLAN-side address.
set -eu
src=/etc/moc/profiles
dst=/var/lib/tftpboot
[ -d "$src" ] || { echo "mkheadnode: no profiles in $src"; exit 0; }
for dir in "$src"/*/; do
    [ -d "$dir" ] || continue
    name=$(basename "$dir")
    case "$name" in pxelinux.cfg|*[!A-Za-z0-9._-]*) echo "mkheadnode: skipping profile '$name'"; continue ;; esac
    rm -rf "$dst/.$name.new"
    cp -R "$dir" "$dst/.$name.new"
    find "$dst/.$name.new" -name '*.cfg' -type f -exec sed -i 's/@HEADNODE@/{{private_address}}/g' {} +
    chmod -R a+rX "$dst/.$name.new"
    rm -rf "$dst/$name"
    mv "$dst/.$name.new" "$dst/$name"
    echo "mkheadnode: published profile $name"
done
