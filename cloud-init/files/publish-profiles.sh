#!/bin/sh
# Written by mkheadnode. Copy each install profile from the read-only share
# (/etc/moc/profiles/<name>/) to {{tftp_root}}/<name>/, where TFTP and HTTP serve it.
# In *.cfg files, @HEADNODE@ becomes this headnode's VLAN-side address. A profile with a
# grub.cfg also gets its UEFI chain, {{efi_dir}}/profiles/<name>/ (shim, GRUB and that
# grub.cfg), which an armed node's {{uefi_dir}}/01-<mac> link points at.
set -eu
src=${MKHEADNODE_PROFILES:-/etc/moc/profiles}
dst=${MKHEADNODE_TFTP_ROOT:-{{tftp_root}}}
chains=$dst/{{efi_dir}}/profiles
[ -d "$src" ] || { echo "mkheadnode: no profiles in $src"; exit 0; }
for dir in "$src"/*/; do
    [ -d "$dir" ] || continue
    name=$(basename "$dir")
    case "$name" in
        *[!A-Za-z0-9._-]* | .*)
            echo "mkheadnode: skipping profile '$name': use letters, digits, '.', '_' and '-'"
            continue ;;
        {{reserved_names}})
            echo "mkheadnode: skipping profile '$name': the name of a boot file or directory"
            continue ;;
    esac
    if [ ! -f "$dir/pxelinux.cfg" ] && [ ! -f "$dir/grub.cfg" ]; then
        echo "mkheadnode: skipping profile '$name': it has neither pxelinux.cfg nor grub.cfg"
        continue
    fi
    rm -rf "$dst/.$name.new"
    cp -R "$dir" "$dst/.$name.new"
    find "$dst/.$name.new" -name '*.cfg' -type f -exec sed -i 's/@HEADNODE@/{{private_address}}/g' {} +
    chmod -R a+rX,go-w "$dst/.$name.new"
    rm -rf "$dst/$name"
    mv "$dst/.$name.new" "$dst/$name"
    rm -rf "$chains/$name"
    if [ -f "$dst/$name/grub.cfg" ]; then
        install -d -m 0755 "$chains/$name"
        ln -s ../../{{uefi_loader}} "$chains/$name/{{uefi_loader}}"
        ln -s ../../grubx64.efi "$chains/$name/grubx64.efi"
        ln -s "../../../$name/grub.cfg" "$chains/$name/grub.cfg"
    fi
    loaders=""
    [ -f "$dst/$name/pxelinux.cfg" ] && loaders="$loaders BIOS (pxelinux.cfg)"
    [ -f "$dst/$name/grub.cfg" ] && loaders="$loaders UEFI (grub.cfg)"
    echo "mkheadnode: published profile $name for$loaders"
done
