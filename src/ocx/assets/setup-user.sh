#!/bin/sh
# Carries out the container-user decision ocx made (src/ocx/user.rs); decides nothing itself.
# Arguments are a list of ops, each with a fixed number of arguments:
#   group-gid GROUP GID              give an existing group another GID
#   group-add GROUP GID              add a group
#   user-ids USER UID GID            set a user's UID and primary GID
#   user-rename OLD NEW              rename a user (passwd, shadow, group member lists)
#   user-home USER HOME              set a user's home, moving the old directory there
#   user-add USER UID GID HOME SHELL add a user (with /etc/skel, if the base has one)
#   home HOME UID GID all|mounts     make the home and the directories ocx mounts; chown all
#                                    of the home, or only those directories
# The files are edited with awk rather than usermod/adduser, so the result is the same on
# Debian, Alpine and a bare busybox, and a user's shell, groups and sudo rules stay as they are.
set -eu

# edit FILE AWK-PROGRAM [VAR=VALUE...]: rewrite FILE in place, keeping its owner and mode
edit() {
  f=$1 prog=$2; shift 2
  [ -f "$f" ] || return 0
  awk -F: -v OFS=: "$@" "$prog" "$f" >"$f.ocx-new"
  cat "$f.ocx-new" >"$f"
  rm -f "$f.ocx-new"
}
# set_field FILE NAME FIELD VALUE
set_field() { edit "$1" '$1 == n { $(k) = v } { print }' -v n="$2" -v k="$3" -v v="$4"; }
home_of() { awk -F: -v n="$1" '$1 == n { print $6; exit }' /etc/passwd; }

while [ $# -gt 0 ]; do
  op=$1; shift
  case $op in
    group-gid)
      set_field /etc/group "$1" 3 "$2"; shift 2 ;;
    group-add)
      echo "$1:x:$2:" >>/etc/group
      if [ -f /etc/gshadow ]; then echo "$1:!::" >>/etc/gshadow; fi
      shift 2 ;;
    user-ids)
      set_field /etc/passwd "$1" 3 "$2"
      set_field /etc/passwd "$1" 4 "$3"
      shift 3 ;;
    user-rename)
      set_field /etc/passwd "$1" 1 "$2"
      set_field /etc/shadow "$1" 1 "$2"
      # member lists: field 4 of group and gshadow, comma-separated
      for f in /etc/group /etc/gshadow; do
        edit "$f" '{ k = split($4, m, ","); out = ""; for (i = 1; i <= k; i++) { x = (m[i] == o) ? n : m[i]; out = out (i > 1 ? "," : "") x }; $4 = out; print }' -v o="$1" -v n="$2"
      done
      echo "ocx: renamed user $1 to $2"
      shift 2 ;;
    user-home)
      old=$(home_of "$1")
      if [ -n "$old" ] && [ "$old" != "$2" ] && [ -d "$old" ] && [ ! -e "$2" ]; then
        mkdir -p "$(dirname "$2")"
        mv "$old" "$2"
      fi
      set_field /etc/passwd "$1" 6 "$2"
      shift 2 ;;
    user-add)
      echo "$1:x:$2:$3::$4:$5" >>/etc/passwd
      if [ -f /etc/shadow ]; then echo "$1:!:19000:0:99999:7:::" >>/etc/shadow; fi
      if [ ! -e "$4" ]; then
        mkdir -p "$4"
        if [ -d /etc/skel ]; then cp -a /etc/skel/. "$4"/ 2>/dev/null || true; fi
      fi
      shift 5 ;;
    home)
      h=$1 ids=$2:$3 mode=$4; shift 4
      mkdir -p "$h"
      for d in .config/opencode .local/share/opencode .local/state .cache; do
        if [ ! -e "$h/$d" ]; then
          mkdir -p "$h/$d"
        fi
      done
      if [ "$mode" = all ]; then
        chown -R "$ids" "$h"
      else
        chown "$ids" "$h" "$h/.config" "$h/.config/opencode" "$h/.local" "$h/.local/share" \
          "$h/.local/share/opencode" "$h/.local/state" "$h/.cache"
      fi ;;
    *)
      echo "setup-user.sh: unknown op $op" >&2; exit 2 ;;
  esac
done
