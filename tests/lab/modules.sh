# Sourced by guest-assets.sh and agent-guest-assets.sh (POSIX sh; they define die).
# copy_modules KVER ROOT ORDER NAME...: resolves each kernel module NAME of
# kernel KVER with its dependencies in load order and copies it, decompressed
# at build time so the guest only needs insmod, to ROOT/lib/modules. ORDER
# lists the modules copied so far, one a line, in load order: a module is
# copied once, and the guest's /init loads them in that order.
copy_modules() {
    cm_kver=$1 cm_root=$2 cm_order=$3
    shift 3
    for cm_name in "$@"; do
        modprobe -S "$cm_kver" --show-depends "$cm_name" > "$cm_order.deps" \
            || die "module $cm_name not found for $cm_kver"
        while read -r verb path _rest; do
            [ "$verb" = insmod ] || continue          # "builtin X" needs nothing
            base=$(basename "$path")
            mod=${base%%.ko*}.ko
            grep -qx "$mod" "$cm_order" && continue
            case "$base" in
                *.ko)     cp "$path" "$cm_root/lib/modules/$mod" ;;
                *.ko.xz)  xz -dc "$path" > "$cm_root/lib/modules/$mod" ;;
                *.ko.zst) zstd -qdc "$path" > "$cm_root/lib/modules/$mod" ;;
                *.ko.gz)  gzip -dc "$path" > "$cm_root/lib/modules/$mod" ;;
                *) die "unknown module format: $path" ;;
            esac
            echo "$mod" >> "$cm_order"
        done < "$cm_order.deps"
    done
    rm -f "$cm_order.deps"
}
