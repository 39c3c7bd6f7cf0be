# aaltohub: the quota warning in every login shell (JupyterLab's terminals
# are login shells). Installed as /etc/profile.d/aaltohub-notices.sh, so
# /etc/profile *sources* it: no exit, no changed options, no variables left
# behind (a function, unset at the end), status 0. The warning is the one
# the hub's QuotaHook gave this server when it started:
#   AALTOHUB_QUOTA_NOTICE   the notice file (warning lines and the site's
#                           free_space_help), else
#   AALTOHUB_QUOTA_PERCENT  how full the home is (numbers only).
# Interactive shells only: scripts and `bash -lc` get no extra output.
_aaltohub_quota_notice() {
  case "$-" in *i*) ;; *) return 0 ;; esac
  local notice="${AALTOHUB_QUOTA_NOTICE:-}" percent="${AALTOHUB_QUOTA_PERCENT:-}"
  local text=""
  if [ -n "$notice" ] && [ -f "$notice" ] && [ -r "$notice" ]; then
    text="$(head -c 4000 -- "$notice")"
  fi
  case "$percent" in ''|*[!0-9]*) percent="" ;; esac
  if [ -z "$text" ] && [ -n "$percent" ]; then
    text="Your home directory is ${percent} % full."
  fi
  [ -n "$text" ] || return 0
  printf '\n*** Disk quota ***\n%s\n\n' "$text"
  printf 'See what uses space:  du -sh ~/* ~/.[!.]* 2>/dev/null | sort -h | tail -15\n'
  printf 'Common culprits:      ~/.cache, ~/.local/share/Trash, old checkpoints and data files\n'
  printf 'Free space now:       df -h ~\n\n'
  return 0
}
_aaltohub_quota_notice
unset -f _aaltohub_quota_notice
