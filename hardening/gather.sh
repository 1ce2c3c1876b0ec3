#!/bin/sh
# The facts `check` judges, printed in delimited sections (hardening/facts.py parses them).
# @OFFLINE@ and @ADMIN@ are filled in before it runs.
# shellcheck disable=SC2317  # functions run through run(), which shellcheck cannot follow
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin; export PATH
LC_ALL=C; export LC_ALL
OFFLINE=@OFFLINE@
ADMIN=@ADMIN@
run() { name=$1; shift; printf '@@AMI@@ %s\n' "$name"; "$@" 2>&1; printf '\n@@RC@@ %s\n' "$?"; }
files() { for f in "$@"; do [ -f "$f" ] && printf '@@FILE@@ %s\n' "$f" && cat "$f" && echo; done; return 0; }
sshd_t() {
  if [ "$OFFLINE" = 1 ]; then
    unshare -m sh -c 'mount -t tmpfs ami-check /run && mkdir -m 755 /run/sshd &&
      ssh-keygen -q -t ed25519 -N "" -f /run/ami-check-key && exec sshd -T -h /run/ami-check-key "$@"' sh "$@"
  else
    sshd -T "$@"
  fi
}
account_keys() {
  # Every account's authorized keys where sshd looks for them (AuthorizedKeysFile, %h and %u expanded).
  spec=$(printf '%s\n' "$ROOT_SSHD" | awk '$1 == "authorizedkeysfile" { for (i = 2; i <= NF; i++) print $i }')
  getent passwd | while IFS=: read -r user _ _ _ _ home _; do
    [ "$user" = root ] && home=${home:-/root}
    for k in ${spec:-.ssh/authorized_keys .ssh/authorized_keys2}; do
      [ "$k" = none ] && continue
      k=$(printf '%s' "$k" | sed -e "s|%h|$home|g" -e "s|%u|$user|g" -e 's|%%|%|g')
      case $k in /*) ;; *) k=$home/$k ;; esac
      [ -f "$k" ] || continue
      printf '@@FILE@@ %s %s\n' "$user" "$k"
      grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$k"
    done
  done
  return 0
}
sudo_reach() {
  # The accounts a sudoers rule can reach: those it names and the members of the groups it names, with
  # uid 0 and the admin (SUDO-02 reads their Defaults). An account no rule names has no grant, whatever
  # its shell, so sudo is not asked about it. Every account is listed when a rule could reach one
  # without naming it (ALL, an alias, a uid or gid, a netgroup, quotes or escapes), when sudoers
  # includes a file outside /etc/sudoers.d, or when rules may come from elsewhere than files.
  {
    # A line of its own after each file: a continuation never runs on into the next file.
    for f in /etc/sudoers /etc/sudoers.d/*; do [ -f "$f" ] && cat "$f" && printf '\n@@END@@\n'; done
    echo '@@NSS@@'; grep -s '^[[:space:]]*sudoers:' /etc/nsswitch.conf
    echo '@@CONF@@'; grep -s '^[[:space:]]*Plugin[[:space:]]' /etc/sudo.conf
    echo '@@GROUP@@'; getent group
    echo '@@PASSWD@@'; getent passwd
  } | awk -F: -v admin="$ADMIN" '
    function reach(u, g) {
      sub(/^!+/, "", u)
      if (u ~ /^%/) {
        g = substr(u, 2)
        if (g == "" || g ~ /^[#:]/ || g ~ /["\\]/) all = 1; else group[g] = 1
      } else if (u == "" || u == "ALL" || u ~ /^[#+"]/ || u ~ /\\/ || u ~ /^[A-Z][A-Z0-9_]*$/) all = 1
      else user[u] = 1
    }
    function rule(line, word, items, n, i) {
      if (line ~ /^[[:space:]]*[@#]include/) {
        if (line !~ /^[[:space:]]*[@#]includedir[[:space:]]+\/etc\/sudoers\.d\/?[[:space:]]*$/) all = 1
      } else if (line ~ /^[[:space:]]*#[0-9]/ || line ~ /^[[:space:]]*User_Alias/) all = 1
      else if (line !~ /^[[:space:]]*(#|$)/ && line !~ /^[[:space:]]*(Defaults|Host_Alias|Runas_Alias|Cmnd?_Alias)/) {
        gsub(/[[:space:]]*,[[:space:]]*/, ",", line); sub(/^[[:space:]]+/, "", line)
        split(line, word, /[[:space:]]+/); n = split(word[1], items, ",")
        for (i = 1; i <= n; i++) reach(items[i])
      }
    }
    /^@@(NSS|CONF|GROUP|PASSWD)@@$/ { part = $0; next }
    part == "@@NSS@@" { s = $0; sub(/^[^:]*:[[:space:]]*/, "", s); if (s !~ /^files[[:space:]]*$/) all = 1; next }
    part == "@@CONF@@" { all = 1; next }
    part == "@@GROUP@@" { if ($1 in group) { gid[$3] = 1; n = split($4, m, ","); for (i = 1; i <= n; i++) member[m[i]] = 1 }; next }
    part == "@@PASSWD@@" {
      if (all || $3 == 0 || $1 == admin || ($1 in user) || ($1 in member) || ($4 in gid)) print $1; next }
    $0 == "@@END@@" { if (cont != "") rule(cont); cont = ""; next }
    { line = cont $0; cont = "" }
    line ~ /\\$/ { cont = substr(line, 1, length(line) - 1) " "; next }
    { rule(line) }'
}
sudo_list() {
  if [ -z "$(command -v sudo)" ]; then echo '@@NOSUDO@@'; return 0; fi
  for u in $(sudo_reach | awk -v half="$1" 'NR % 2 == half'); do
    printf '@@USER@@ %s\n' "$u"
    RES_OPTIONS='timeout:1 attempts:1' sudo -l -U "$u" 2>&1 | grep -v 'unable to resolve host'
  done
  return 0
}
shadow() {
  awk -F: '{ s = $2; t = "unusable"
    if (s == "") t = "empty"
    else if (s ~ /^[!*]/) t = "locked"
    else if (s ~ /^\$/ || (length(s) == 13 && s ~ /^[.\/0-9A-Za-z]+$/)) t = "hash"
    print $1 ":" t }' /etc/shadow
}
gettys() {
  # How every getty and console unit starts (drop-ins included), and whether the debug shell is on.
  dirs="/etc/systemd /run/systemd/system /usr/lib/systemd/system"
  [ -L /lib ] || dirs="$dirs /lib/systemd/system"
  # shellcheck disable=SC2086  # $dirs is a list of directories
  grep -rsnE '^[[:space:]]*ExecStart=' $dirs | grep -E '^[^:]*(getty|console)[^:]*:'
  grep -snE '^[^#].*getty' /etc/inittab
  printf '@@DEBUG_SHELL@@ %s\n' "$(systemctl is-enabled debug-shell.service 2>&1 | tail -n 1)"
  return 0
}
sulogin_units() {
  # Emergency and rescue mode's unit files and drop-ins in every unit directory; a mask as an empty file.
  for d in /etc/systemd/system /run/systemd/system /usr/local/lib/systemd/system /usr/lib/systemd/system \
    /lib/systemd/system; do
    [ "$d" = /lib/systemd/system ] && [ -L /lib ] && continue
    for f in "$d/emergency.service" "$d/rescue.service" "$d"/emergency.service.d/*.conf "$d"/rescue.service.d/*.conf \
      "$d"/service.d/*.conf; do
      if [ "$(readlink -f "$f")" = /dev/null ]; then printf '@@FILE@@ %s\n' "$f"
      elif [ -f "$f" ]; then printf '@@FILE@@ %s\n' "$f" && cat "$f" && echo; fi
    done
  done
  return 0
}
grub_cfg() {
  for f in /boot/grub/grub.cfg /boot/grub2/grub.cfg /boot/efi/EFI/*/grub.cfg; do
    [ -f "$f" ] || continue
    printf '@@FILE@@ %s\n' "$f"
    pattern='^[[:space:]]*(linux|linux16|linuxefi|search|search\.[a-z_]+|menuentry|password|password_pbkdf2)[[:space:]]'
    grep -nE "$pattern|set (superusers|timeout)=" "$f" |
      sed -E 's/^([0-9]+:[[:space:]]*password(_pbkdf2)?[[:space:]]+[^[:space:]]+[[:space:]]+)[^[:space:]]+/\1(hash)/'
  done
  return 0
}
bls() {
  for f in /boot/loader/entries/*.conf; do
    [ -f "$f" ] || continue
    printf '@@FILE@@ %s\n' "$f"
    grep -n '^options' "$f"
  done
  grep -sh '^kernelopts=' /boot/grub2/grubenv /boot/grub/grubenv
  return 0
}
grub_defaults() {
  (
    # shellcheck disable=SC1090  # grub's defaults, sourced as grub-mkconfig sources them
    for f in /etc/default/grub /etc/default/grub.d/*.cfg; do [ -f "$f" ] && . "$f"; done
    for v in GRUB_CMDLINE_LINUX GRUB_CMDLINE_LINUX_DEFAULT GRUB_CMDLINE_LINUX_RECOVERY GRUB_DEVICE \
      GRUB_DISABLE_UUID GRUB_DISABLE_LINUX_UUID GRUB_DISABLE_LINUX_PARTUUID; do
      eval "printf '%s=%s\n' $v \"\${$v-}\""
    done
  )
  grep -sHn '^[[:space:]]*GRUB_CMDLINE_LINUX' /etc/default/grub /etc/default/grub.d/*.cfg | sed 's/^/@@LINE@@ /'
  return 0
}
find_ours() {
  # The paths of ami-hardening's scripts in an initramfs, each grep stopping at its first match:
  # initramfs-tools sorts its archive, so scripts/ comes early; an early uncompressed (microcode)
  # archive needs lsinitramfs.
  # shellcheck disable=SC2209  # the names of the commands to run, not their output
  case $(od -An -tx1 -N4 "$1" | tr -d ' ') in
    1f8b*) unpack=zcat ;; 28b52ffd) unpack='zstd -dcq' ;; fd377a58) unpack=xzcat ;; 02214c18) unpack=lz4cat ;;
    *) unpack= ;;
  esac
  for name in ami-root-unique ami-no-shell; do
    if [ -n "$unpack" ]; then
      $unpack <"$1" 2>&- | grep -a -o -m 1 -E "(scripts/[a-z-]*/|etc/cmdline\.d/)$name(\.conf)?"
    elif [ -n "$(command -v lsinitramfs)" ]; then
      lsinitramfs "$1" | grep "$name"
    else
      lsinitrd "$1" | grep "$name"
    fi
  done
  return 0
}
initramfs() {
  if [ "$OFFLINE" = 1 ]; then
    # shellcheck disable=SC2012  # kernel file names have no odd characters
    kver=$(ls /boot | sed -n 's/^vmlinuz-//p' | sort -V | tail -n 1)
  else
    kver=$(uname -r)
  fi
  for img in "/boot/initrd.img-$kver" "/boot/initramfs-$kver.img"; do
    [ -f "$img" ] || continue
    echo "@@IMAGE@@ $img"
    find_ours "$img"
    return 0
  done
  echo "@@IMAGE@@ none for kernel ${kver:-unknown}"
  return 1
}
polkit_state() {
  for daemon in /usr/lib/polkit-1/polkitd /usr/libexec/polkitd /usr/libexec/polkit-1/polkitd; do
    if [ -x "$daemon" ]; then echo "@@POLKITD@@ $daemon"; fi
  done
  files /etc/polkit-1/rules.d/*.rules /usr/share/polkit-1/rules.d/*.rules
}
pkexec_mode() {
  p=$(command -v pkexec)
  [ -n "$p" ] && stat -Lc '%a %U %n' "$p"
  return 0
}
ssm() {
  for u in amazon-ssm-agent.service snap.amazon-ssm-agent.amazon-ssm-agent.service; do
    for d in /etc/systemd/system /run/systemd/system /usr/lib/systemd/system /lib/systemd/system; do
      [ -e "$d/$u" ] && echo "@@UNIT@@ $u $(systemctl is-enabled "$u" 2>&1 | tail -n 1)" && break
    done
  done
  [ -e /etc/sudoers.d/ssm-agent-users ] && echo '@@FILE@@ /etc/sudoers.d/ssm-agent-users'
  return 0
}
bg() { if [ -n "$TMPD" ]; then run "$@" >"$TMPD/$1" & else run "$@"; fi; }
CMDLINE='' TMPD=''
[ "$OFFLINE" = 1 ] || { CMDLINE=$(cat /proc/cmdline); TMPD=$(mktemp -d); }
bg sudo-0 sudo_list 0
bg sudo-1 sudo_list 1
bg initramfs initramfs
run sshd sshd_t
ROOT_SSHD=$(sshd_t -C user=root,host=localhost,addr=127.0.0.1 2>&1); rc=$?
printf '@@AMI@@ sshd-root\n%s\n@@RC@@ %s\n' "$ROOT_SSHD" "$rc"
[ -n "$ADMIN" ] && run sshd-admin sshd_t -C "user=$ADMIN,host=localhost,addr=127.0.0.1"
run sshd-files files /etc/ssh/sshd_config /etc/ssh/sshd_config.d/*
run sshd-units grep -rsHn AuthorizedKeysCommand /etc/systemd/system /run/systemd/system /usr/lib/systemd/system
run account-keys account_keys
run passwd getent passwd
run group getent group
run shadow shadow
run sudoers-groups grep -sHnE '^[[:space:]]*%' /etc/sudoers /etc/sudoers.d/*
run cloud-files files /etc/cloud/cloud.cfg /etc/cloud/cloud.cfg.d/*.cfg /run/cloud-init/cloud.cfg
run gettys gettys
run sulogin sulogin_units
[ "$OFFLINE" = 1 ] || run cmdline printf '%s\n' "$CMDLINE"
run grub-cfg grub_cfg
run bls bls
run grub-defaults grub_defaults
run fstab cat /etc/fstab
[ "$OFFLINE" = 1 ] || run findmnt findmnt -no SOURCE,UUID,PARTUUID,LABEL /
run pkexec pkexec_mode
run polkit polkit_state
run ssm ssm
wait
if [ -n "$TMPD" ]; then cat "$TMPD"/*; rm -rf "$TMPD"; fi
exit 0
