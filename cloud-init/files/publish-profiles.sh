#!/bin/sh
# Written by mkheadnode. Copy each install profile from the read-only share
# (/etc/moc/profiles/<name>/) to {{tftp_root}}/<name>/, where TFTP and HTTP serve it.
# In *.cfg files, @HEADNODE@ becomes this headnode's VLAN-side address. A profile with a
# grub.cfg also gets its UEFI chain, {{efi_dir}}/profiles/<name>/ (shim, GRUB and that
# grub.cfg), which an armed node's {{uefi_dir}}/01-<mac> link points at.
#
# A profile on the share is <name>/, or, when mkheadnode added it through libvirt from another
# machine (which cannot rename), <name>@<generation>/ beside a marker <name>@<generation>.ready
# that is written last: the newest generation with a marker counts, else <name>/. A generation
# without its marker is an upload not yet done, and never published.
#
# What it published is listed in a manifest under the TFTP root; a listed profile that is no
# longer on the share is removed, with its chain. Nothing it did not publish is ever removed.
set -eu
src=${MKHEADNODE_PROFILES:-/etc/moc/profiles}
dst=${MKHEADNODE_TFTP_ROOT:-{{tftp_root}}}
chains=$dst/{{efi_dir}}/profiles
manifest=$dst/.mkheadnode-published
[ -d "$src" ] || { echo "mkheadnode: no profiles in $src"; exit 0; }

# Why `$1` cannot name a profile, if it cannot.
bad_name() {
    case "$1" in
        *[!A-Za-z0-9._-]* | .* | "")
            echo "use letters, digits, '.', '_' and '-'" ;;
        {{reserved_names}})
            echo "the name of a boot file or directory" ;;
    esac
}

# The share's folder of profile $1 that counts, or nothing.
source_of() {
    best=-1
    for marker in "$src/$1"@*.ready; do
        gen=${marker%.ready}
        gen=${gen##*@}
        case "$gen" in "" | *[!0-9]* | 0?*) continue ;; esac
        [ ${#gen} -le 18 ] && [ -f "$marker" ] && [ ! -L "$marker" ] && [ -d "$src/$1@$gen" ] || continue
        [ "$gen" -gt "$best" ] && best=$gen
    done
    if [ "$best" -ge 0 ]; then
        echo "$src/$1@$best"
    elif [ -d "$src/$1" ]; then
        echo "$src/$1"
    fi
}

listed=""
seen=" "
for entry in "$src"/*/; do
    [ -d "$entry" ] || continue
    name=$(basename "$entry")
    name=${name%%@*}
    case "$seen" in *" $name "*) continue ;; esac
    seen="$seen$name "
    why=$(bad_name "$name")
    if [ -n "$why" ]; then
        echo "mkheadnode: skipping profile '$name': $why"
        continue
    fi
    dir=$(source_of "$name")
    if [ -z "$dir" ]; then
        echo "mkheadnode: skipping profile '$name': its upload is not complete"
        continue
    fi
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
    listed="$listed $name"
    loaders=""
    [ -f "$dst/$name/pxelinux.cfg" ] && loaders="$loaders BIOS (pxelinux.cfg)"
    [ -f "$dst/$name/grub.cfg" ] && loaders="$loaders UEFI (grub.cfg)"
    echo "mkheadnode: published profile $name for$loaders"
done

# Profiles published before: those still on the share stay (published again above, or left as
# they were if the share's copy was skipped); the others are removed.
if [ -f "$manifest" ]; then
    while IFS= read -r name; do
        [ -z "$(bad_name "$name")" ] || continue
        case " $listed " in *" $name "*) continue ;; esac
        if [ -n "$(source_of "$name")" ]; then
            listed="$listed $name"
            continue
        fi
        rm -rf "$dst/$name" "$chains/$name"
        echo "mkheadnode: removed profile $name (no longer on the share)"
    done < "$manifest"
fi
for name in $listed; do echo "$name"; done > "$manifest.new"
chmod 0644 "$manifest.new"
mv "$manifest.new" "$manifest"
