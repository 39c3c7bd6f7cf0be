#!/bin/bash
# Root-then-switch mode only: give NB_USER the supplementary groups that the
# hub planned (NB_CREATE_GROUPS="name:gid,name:gid"), because docker-stacks'
# start.sh keeps only NB_GID when it switches user.
#
# Installed as before-notebook.d/50-aaltohub-groups.sh, which start.sh
# *sources* in a shell running `set -e`. So the work runs in a subshell
# function: `set -u` and `exit` there cannot change or end start.sh, and
# the hook always ends with status 0 (a failure is a warning).
# Every field is validated before use; nothing is evaluated. With
# AALTOHUB_GROUPS_DRY_RUN=1 the commands are printed instead of run (tests).

_aaltohub_add_groups() (
  set -u
  [ -n "${NB_CREATE_GROUPS:-}" ] || exit 0
  run() { if [ "${AALTOHUB_GROUPS_DRY_RUN:-}" = 1 ]; then echo "$*"; else "$@"; fi; }
  if [ "$(id -u)" != 0 ] && [ "${AALTOHUB_GROUPS_DRY_RUN:-}" != 1 ]; then
    echo "aaltohub-groups: not root, cannot add groups (use UIDHook mode direct)" >&2
    exit 0
  fi
  user="${NB_USER:-jovyan}"
  if ! [[ "$user" =~ ^[a-z0-9][a-z0-9._-]{0,63}$ ]]; then
    echo "aaltohub-groups: refusing NB_USER '$user'" >&2
    exit 0
  fi
  IFS=',' read -r -a entries <<< "$NB_CREATE_GROUPS"
  for entry in "${entries[@]}"; do
    name="${entry%%:*}"; gid="${entry##*:}"
    if ! [[ "$name" =~ ^[a-z][a-z0-9._-]{0,31}$ && "$gid" =~ ^[1-9][0-9]{2,9}$ ]]; then
      echo "aaltohub-groups: skipping malformed entry '$entry'" >&2
      continue
    fi
    getent group "$gid" >/dev/null 2>&1 || run groupadd --gid "$gid" "$name" \
      || echo "aaltohub-groups: could not create group $name ($gid)" >&2
    run usermod --append --groups "$gid" "$user" \
      || echo "aaltohub-groups: could not add $user to group $gid" >&2
  done
  exit 0
)

_aaltohub_add_groups || echo "aaltohub-groups: failed; continuing without the course groups" >&2
unset -f _aaltohub_add_groups
true
