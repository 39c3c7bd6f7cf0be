#!/bin/bash
# Root-then-switch mode only: give NB_USER the supplementary groups that the
# hub planned (NB_CREATE_GROUPS="name:gid,name:gid"), because docker-stacks'
# start.sh keeps only NB_GID when it switches user.
# Every field is validated before use; nothing is evaluated. With
# AALTOHUB_GROUPS_DRY_RUN=1 the commands are printed instead of run (tests).
set -u
[ -n "${NB_CREATE_GROUPS:-}" ] || return 0 2>/dev/null || exit 0
run() { if [ "${AALTOHUB_GROUPS_DRY_RUN:-}" = 1 ]; then echo "$*"; else "$@"; fi; }
if [ "$(id -u)" != 0 ] && [ "${AALTOHUB_GROUPS_DRY_RUN:-}" != 1 ]; then
  echo "aaltohub-groups: not root, cannot add groups (use UIDHook mode direct)" >&2
  return 0 2>/dev/null || exit 0
fi
user="${NB_USER:-jovyan}"
if ! [[ "$user" =~ ^[a-z0-9][a-z0-9._-]{0,63}$ ]]; then
  echo "aaltohub-groups: refusing NB_USER '$user'" >&2
  return 0 2>/dev/null || exit 0
fi
IFS=',' read -r -a entries <<< "$NB_CREATE_GROUPS"
for entry in "${entries[@]}"; do
  name="${entry%%:*}"; gid="${entry##*:}"
  if ! [[ "$name" =~ ^[a-z][a-z0-9._-]{0,31}$ && "$gid" =~ ^[1-9][0-9]{2,9}$ ]]; then
    echo "aaltohub-groups: skipping malformed entry '$entry'" >&2
    continue
  fi
  getent group "$gid" >/dev/null 2>&1 || run groupadd --gid "$gid" "$name"
  run usermod --append --groups "$gid" "$user"
done
