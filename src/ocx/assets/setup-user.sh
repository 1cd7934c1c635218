#!/bin/sh
# Makes user $1 with UID $2 and GID $3 exist, whatever the base already has:
# - a group with GID $3 already exists: it becomes the user's primary group as it is;
# - another user already owns UID $2 (ubuntu:24.04 ships `ubuntu` as 1000): it is renamed;
# - a user named $1 exists with another UID: it is renumbered;
# - Debian/Ubuntu bases use useradd/usermod/groupadd/groupmod, busybox/Alpine adduser/addgroup;
#   a base with neither (a bare static busybox) gets its /etc/passwd and /etc/group edited.
set -eu
u=$1 uid=$2 gid=$3 home=/home/$1

has() { command -v "$1" >/dev/null 2>&1; }
name_of() { awk -F: -v id="$2" '$3 == id { print $1; exit }' "$1"; }
exists() { awk -F: -v n="$2" '$1 == n { f = 1 } END { exit !f }' "$1"; }
# field edits for bases without usermod/groupmod (busybox)
set_fields() { # file name field=value...
  f=$1 n=$2; shift 2
  awk -F: -v OFS=: -v n="$n" -v edits="$*" '
    $1 == n { k = split(edits, e, " "); for (i = 1; i <= k; i++) { split(e[i], kv, "="); $(kv[1]) = kv[2] } }
    { print }' "$f" >"$f.ocx" && cat "$f.ocx" >"$f" && rm -f "$f.ocx"
}
rename_entry() { # file old new
  [ -f "$1" ] || return 0
  awk -F: -v OFS=: -v o="$2" -v n="$3" '$1 == o { $1 = n } { print }' "$1" >"$1.ocx" && cat "$1.ocx" >"$1" && rm -f "$1.ocx"
}

grp=$(name_of /etc/group "$gid")
if [ -z "$grp" ]; then
  if exists /etc/group "$u"; then
    if has groupmod; then groupmod -g "$gid" "$u"; else set_fields /etc/group "$u" "3=$gid"; fi
  elif has groupadd; then
    groupadd -g "$gid" "$u"
  elif has addgroup; then
    addgroup -g "$gid" "$u"
  else
    echo "$u:x:$gid:" >>/etc/group
  fi
  grp=$u
fi

old=$(name_of /etc/passwd "$uid")
if [ -n "$old" ] && [ "$old" != "$u" ]; then
  if exists /etc/passwd "$u"; then
    if has userdel; then userdel "$u"; else deluser "$u"; fi
  fi
  if has usermod; then
    usermod -l "$u" "$old"
  else
    rename_entry /etc/passwd "$old" "$u"
    rename_entry /etc/shadow "$old" "$u"
  fi
  echo "ocx: renamed existing user $old (uid $uid) to $u"
fi

if exists /etc/passwd "$u"; then
  if has usermod; then
    usermod -u "$uid" -g "$gid" -d "$home" -s /bin/sh "$u" >/dev/null
  else
    set_fields /etc/passwd "$u" "3=$uid" "4=$gid" "6=$home" "7=/bin/sh"
  fi
elif has useradd; then
  useradd -u "$uid" -g "$gid" -d "$home" -s /bin/sh -M "$u"
elif has adduser; then
  adduser -D -H -u "$uid" -G "$grp" -h "$home" -s /bin/sh "$u"
else
  echo "$u:x:$uid:$gid::$home:/bin/sh" >>/etc/passwd
  if [ -f /etc/shadow ]; then echo "$u:!:1::::::" >>/etc/shadow; fi
fi

# the mount points ocx uses, made now so the engine doesn't create their parents root-owned
mkdir -p "$home/.config/opencode" "$home/.local/share/opencode" "$home/.local/state" "$home/.cache"
chown -R "$uid:$gid" "$home"
echo "ocx: user $(id "$u")"
