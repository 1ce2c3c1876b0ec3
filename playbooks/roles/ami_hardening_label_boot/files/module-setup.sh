#!/bin/bash
# ami-hardening LABEL-03: dracut module running ami-root-unique before root is mounted.

check() {
    return 0
}

depends() {
    echo udev-rules
}

# shellcheck disable=SC2154  # dracut sets $moddir
install() {
    inst_multiple blkid sleep cat
    inst_hook pre-mount 90 "$moddir/ami-root-unique.sh"
}
