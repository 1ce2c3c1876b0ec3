#!/bin/sh
# Verification step of the Packer build (shell-local): run `ami-harden check` against the
# build instance with the build's own key (a key file, or the temporary key's text).
# Any failing control fails the build.
set -eu

key=${AMI_HARDEN_BUILD_KEY_FILE:-}
if [ -z "$key" ]; then
    key=$(mktemp)
    trap 'rm -f "$key"' EXIT
    printf '%s\n' "$AMI_HARDEN_BUILD_KEY" >"$key"
fi

# check NAME ARGS...: with AMI_HARDEN_REPORT_DIR set, the JSON report also goes to NAME.json there,
# which is what `ami-harden build` reads to name the failing controls.
check() {
    name=$1
    shift
    set -- "$@" ${AMI_HARDEN_REPORT_DIR:+--report "$AMI_HARDEN_REPORT_DIR/$name.json"}
    $AMI_HARDEN_CHECK check "$AMI_HARDEN_TARGET" --key "$key" --admin-user "$AMI_HARDEN_ADMIN_USER" "$@"
}

# A --skip option for each id given.
skipping() {
    for id in "$@"; do printf ' --skip=%s' "$id"; done
}

skip=$(printf '%s' "${AMI_HARDEN_SKIP:-}" | tr '[:lower:]' '[:upper:]')
echo "ami-hardening: verifying $AMI_HARDEN_TARGET (profile $AMI_HARDEN_PROFILE, admin $AMI_HARDEN_ADMIN_USER)${skip:+, leaving out $skip}"
status=0
# shellcheck disable=SC2046,SC2086
if [ "$AMI_HARDEN_PROFILE" = sealed ]; then
    # Until the seal the admin keeps the one grant the build needs: SUDO-01 is judged as
    # marketplace here (only the admin), and the seal then removes that grant and fails
    # unless no account keeps one.
    check verify-sealed --profile sealed $(skipping SUDO-01 $skip) || status=$?
    case " $skip " in
        *" SUDO-01 "*) ;;
        *) check verify-sudo-01 --profile marketplace --only SUDO-01 || status=$? ;;
    esac
else
    check "verify-$AMI_HARDEN_PROFILE" --profile "$AMI_HARDEN_PROFILE" $(skipping $skip) || status=$?
fi
if [ "$status" -ne 0 ]; then
    echo "ami-hardening: VERIFICATION FAILED (ami-harden check exit $status): the controls marked FAIL above;" \
        "the image is neither sealed nor saved" >&2
    exit 1
fi
echo "ami-hardening: verification passed"
