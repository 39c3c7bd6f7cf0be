#!/bin/bash
# Direct-UID mode (the default): the pod runs as the student's uid, which has
# no entry in the image's /etc/passwd. Without one, whoami, getpass.getuser()
# and nbgrader fail with a KeyError, and HOME (/home/jovyan) is not writable.
#
# This hook gives the uid a passwd and group entry through nss_wrapper
# (libnss-wrapper): LD_PRELOAD plus NSS_WRAPPER_PASSWD/GROUP pointing at
# files written here, in a private temporary directory. No file of the image
# is changed and nothing needs root; docker-stacks' own fix needs a
# group-writable /etc/passwd and the root group (docs/kubernetes.md says why
# we do not use it). HOME becomes the user's home mount.
#
# Installed as start-notebook.d/10-aaltohub-user.sh: docker-stacks' start.sh
# *sources* it, before its own passwd check, in a shell running `set -e`.
# So: no set -e/-u, no exit, no changed options, status 0 always. The work
# is done in a subshell function (options cannot leak from it); only the
# final exports touch the sourcing shell. As root (root-then-switch mode)
# it does nothing: start.sh creates the user itself.

_aaltohub_nss_files() (
  uid="$(id -u)" || exit 1
  gid="$(id -g)" || exit 1
  [ "$uid" != 0 ] || exit 1
  lib=""
  for candidate in /usr/lib/*-linux-gnu/libnss_wrapper.so /usr/lib64/libnss_wrapper.so /usr/lib/libnss_wrapper.so; do
    if [ -r "$candidate" ]; then lib="$candidate"; break; fi
  done
  if [ -z "$lib" ]; then
    echo "aaltohub-user: libnss_wrapper.so not found; install libnss-wrapper in the image" >&2
    exit 1
  fi
  user="${NB_USER:-}"
  if ! [[ "$user" =~ ^[a-z_][a-z0-9._-]{0,31}$ ]]; then
    user="user-$uid"
  fi
  home=""
  for candidate in "${AALTOHUB_HOME:-}" "${HOME:-}"; do
    if [ -n "$candidate" ] && [ -d "$candidate" ] && [ -w "$candidate" ]; then
      home="$candidate"; break
    fi
  done
  if [ -z "$home" ]; then
    home="$(mktemp -d "${TMPDIR:-/tmp}/aaltohub-home-XXXXXX")" || exit 1
    echo "aaltohub-user: no writable home at '${AALTOHUB_HOME:-}' or '${HOME:-}'; using $home, which is not kept" >&2
  fi
  dir="$(mktemp -d "${TMPDIR:-/tmp}/aaltohub-nss-XXXXXX")" || exit 1
  # passwd: the image's entries, minus any of this name or uid, plus ours
  while IFS= read -r line; do
    IFS=: read -r name _ entry_uid _ <<< "$line"
    [ "$name" = "$user" ] || [ "$entry_uid" = "$uid" ] || printf '%s\n' "$line"
  done < /etc/passwd > "$dir/passwd"
  printf '%s:x:%s:%s::%s:/bin/bash\n' "$user" "$uid" "$gid" "$home" >> "$dir/passwd"
  # group: the image's entries, plus each of our gids it lacks, named from
  # NB_GROUP (primary) or NB_CREATE_GROUPS (name:gid,...) when valid
  cp /etc/group "$dir/group" || exit 1
  for g in $(id -G); do
    [[ "$g" =~ ^[0-9]+$ ]] || continue
    if cut -d: -f3 /etc/group | grep -qx "$g"; then continue; fi
    gname="group-$g"
    if [ "$g" = "$gid" ] && [[ "${NB_GROUP:-}" =~ ^[a-z_][a-z0-9._-]{0,31}$ ]]; then
      gname="$NB_GROUP"
    fi
    IFS=',' read -r -a entries <<< "${NB_CREATE_GROUPS:-}"
    for entry in "${entries[@]}"; do
      if [ "${entry##*:}" = "$g" ] && [[ "${entry%%:*}" =~ ^[a-z][a-z0-9._-]{0,31}$ ]]; then
        gname="${entry%%:*}"
      fi
    done
    members="$user"
    [ "$g" != "$gid" ] || members=""
    printf '%s:x:%s:%s\n' "$gname" "$g" "$members" >> "$dir/group"
  done
  printf '%s\n%s\n%s\n' "$lib" "$dir" "$home"
)

# Only for a uid without an entry: a uid the image knows (jovyan) keeps its.
if [ "$(id -u)" != 0 ] && ! id -un >/dev/null 2>&1; then
  if _aaltohub_nss_out="$(_aaltohub_nss_files)"; then
    { read -r _aaltohub_lib; read -r _aaltohub_dir; read -r _aaltohub_home; } <<< "$_aaltohub_nss_out"
    export LD_PRELOAD="${_aaltohub_lib}${LD_PRELOAD:+ $LD_PRELOAD}"
    export NSS_WRAPPER_PASSWD="$_aaltohub_dir/passwd"
    export NSS_WRAPPER_GROUP="$_aaltohub_dir/group"
    export HOME="$_aaltohub_home"
    echo "aaltohub-user: $(id -un) (uid $(id -u)) has passwd and group entries; HOME=$HOME"
  else
    echo "aaltohub-user: could not add a passwd entry; whoami and nbgrader may fail" >&2
  fi
  unset _aaltohub_nss_out _aaltohub_lib _aaltohub_dir _aaltohub_home
fi
unset -f _aaltohub_nss_files
true
