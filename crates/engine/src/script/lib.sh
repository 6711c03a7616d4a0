# virtfleet's fixed shell functions, sent ahead of every remote script (POSIX sh, coreutils).
# Every runtime value reaches them as one quoted argument (engine::script::Script); nothing
# here is assembled by code. The tags of output lines ($VF_T_*) are set by the same script
# from engine::wire, so the producer and the parser share one definition.
# shellcheck shell=sh disable=SC2034

# stdin as "<line tag> <line>" lines; a last line without a newline counts too.
vf_lines() {
  while IFS= read -r l || [ -n "$l" ]; do printf '%s %s\n' "$VF_T_LINE" "$l"; done
}

# vf_stat PATH...: "<stat tag> <st_mode in hex> <owner> <group> <path>" (a symlink itself,
# never followed) and "<sha256>  <path>" per existing file. Two processes for any number of
# paths: a process start is what a fleet run costs a host.
vf_stat() {
  [ "$#" -gt 0 ] || return 0
  stat -c "$VF_T_STAT %f %U %G %n" -- "$@" 2>/dev/null
  sha256sum -- "$@" 2>/dev/null
  return 0
}

# vf_unwritable DIR...: names each existing directory this login cannot write.
vf_unwritable() {
  for d; do
    if [ -e "$d" ] && [ ! -w "$d" ]; then printf '%s %s\n' "$VF_T_UNWRITABLE" "$d"; fi
  done
}

# vf_contents FILE...: each existing file whole, read by the shell itself.
vf_contents() {
  for f; do
    # A symlink is not read through (it may point anywhere); the push replaces it.
    if [ ! -f "$f" ] || [ -L "$f" ]; then continue; fi
    printf '%s %s\n' "$VF_T_CONTENT" "$f"
    vf_lines < "$f"
  done
}

# vf_markers FILE...: each applied marker, announced even when absent.
vf_markers() {
  for m; do
    printf '%s %s\n' "$VF_T_MARKER" "$m"
    if [ -f "$m" ] && [ ! -L "$m" ]; then vf_lines < "$m"; fi
  done
}

# vf_containers ENGINE NAME...: each container's ID (a recreated container has a new one).
# podman's on-disk store lists them all: reading it costs ~2 ms where starting
# `podman inspect` costs ~200 ms of host CPU.
vf_containers() {
  vf_engine=$1
  shift
  if [ "$vf_engine" = podman ]; then
    for f in /var/lib/containers/storage/overlay-containers/containers.json \
             /var/lib/containers/storage/vfs-containers/containers.json; do
      [ -f "$f" ] || continue
      printf '%s ' "$VF_T_STORE"
      while IFS= read -r l || [ -n "$l" ]; do printf '%s' "$l"; done < "$f"
      echo
      return 0
    done
  fi
  "$vf_engine" inspect --format "$VF_T_CONTAINER {{.Name}} {{.Id}}" -- "$@" 2>/dev/null
  return 0
}

# vf_read_files FILE...: each file in order, framed as "<file tag> <size>", its bytes and a
# newline, or "<absent tag>" (paths are not repeated: the caller knows them, whatever they hold).
vf_read_files() {
  for f; do
    if [ -f "$f" ]; then
      printf '%s %s\n' "$VF_T_FILE" "$(stat -c %s -- "$f")"
      cat -- "$f"
      echo
    else
      printf '%s\n' "$VF_T_ABSENT"
    fi
  done
}

# vf_cat FILE: the file, or nothing when it does not exist.
vf_cat() {
  if [ -f "$1" ]; then cat -- "$1"; fi
}

# vf_remove_stale_stages DIR: removes the stage directories in DIR whose push died without
# cleaning up (SIGKILL, a host crash): those whose owner file names a process that no longer
# exists. A live push's stage stays, and an unreadable owner counts as live.
vf_remove_stale_stages() {
  for owner in "$1"/.virtfleet-stage.*.pid; do
    [ -f "$owner" ] || continue
    pid=
    read -r pid < "$owner" || :
    case $pid in '' | *[!0-9]*) continue ;; esac
    [ -d "/proc/$pid" ] && continue
    rm -rf -- "${owner%.pid}" "$owner"
  done
}

# vf_claim_stage STAGE: records this shell as the owner of STAGE before it exists.
vf_claim_stage() {
  echo "$$" > "$1.pid"
}

# vf_put FILE CONTENT: writes CONTENT exactly (a builtin: no process per file).
vf_put() {
  printf '%s' "$2" > "$1"
}

# vf_swap DIR FILE...: renames the staged FILEs into DIR (one process per directory).
vf_swap() {
  vf_dir=$1
  shift
  mv -f -t "$vf_dir" -- "$@"
}

# vf_backup SUFFIX PATH...: keeps each file's current version as PATH+SUFFIX, a hard link
# (content, mode and owner exactly as they were, at the cost of one `ln`), or an empty
# PATH+SUFFIX.absent where there is no file. Older backups of the same paths go first.
vf_backup() {
  vf_suffix=$1
  shift
  for p; do
    rm -f -- "$p$vf_suffix" "$p$vf_suffix.absent"
    if [ -f "$p" ]; then ln -- "$p" "$p$vf_suffix"; else : > "$p$vf_suffix.absent"; fi
  done
}

# vf_restore SUFFIX PATH...: puts back what vf_backup kept: the file, or no file.
vf_restore() {
  vf_suffix=$1
  shift
  for p; do
    if [ -f "$p$vf_suffix" ]; then
      mv -f -- "$p$vf_suffix" "$p"
      rm -f -- "$p$vf_suffix.absent"
    elif [ -f "$p$vf_suffix.absent" ]; then
      rm -f -- "$p" "$p$vf_suffix.absent"
    fi
  done
}

# vf_remove_backups SUFFIX PATH...: deletes what vf_backup kept (old private keys).
vf_remove_backups() {
  vf_suffix=$1
  shift
  for p; do rm -f -- "$p$vf_suffix" "$p$vf_suffix.absent"; done
}

# vf_restart ENGINE CONTAINER: restarts the container. Under heavy load podman can stop the
# container and still fail the restart ("container state improper: stopped"), leaving the
# service down: then stop (a no-op when stopped) and start it, and only if both fail report
# the restart's error.
vf_restart() {
  if ! vf_out=$("$1" restart -- "$2" 2>&1 >/dev/null); then
    if ! { "$1" stop -- "$2" >/dev/null 2>&1 && "$1" start -- "$2" >/dev/null 2>&1; }; then
      printf '%s\n' "$vf_out" >&2
      return 1
    fi
  fi
}

# vf_ready ENGINE CONTAINER RETRIES DELAY ARGV...: runs ARGV in the container until it
# succeeds, at most RETRIES times, DELAY seconds apart.
vf_ready() {
  vf_engine=$1 vf_container=$2 vf_retries=$3 vf_delay=$4
  shift 4
  vf_i=0
  until vf_out=$("$vf_engine" exec -- "$vf_container" "$@" 2>&1 </dev/null); do
    vf_i=$((vf_i + 1))
    if [ "$vf_i" -ge "$vf_retries" ]; then
      printf '%s not ready after %s checks: %s\n' "$vf_container" "$vf_retries" "$vf_out" >&2
      return 3
    fi
    sleep "$vf_delay"
  done
}

# vf_exec ENGINE CONTAINER ARGV...: runs ARGV in the container, no stdin.
vf_exec() {
  vf_engine=$1 vf_container=$2
  shift 2
  "$vf_engine" exec -- "$vf_container" "$@" </dev/null
}

# vf_exec_stdin ENGINE CONTAINER ARGV...: the same, fed this script's stdin (a secret).
vf_exec_stdin() {
  vf_engine=$1 vf_container=$2
  shift 2
  "$vf_engine" exec -i -- "$vf_container" "$@"
}

# vf_exec_timeout ENGINE CONTAINER SECONDS ARGV...: vf_exec, given up after SECONDS.
vf_exec_timeout() {
  vf_engine=$1 vf_container=$2 vf_seconds=$3
  shift 3
  "$vf_engine" exec -- "$vf_container" timeout "$vf_seconds" "$@" </dev/null
}

# vf_write_marker FILE CONTENT: replaces the applied marker atomically, through a fresh
# temporary file of its own (O_EXCL: never through a name someone else prepared).
vf_write_marker() {
  vf_tmp=$(mktemp -- "${1%/*}/.virtfleet-marker.XXXXXX") || return 1
  if ! { printf '%s' "$2" > "$vf_tmp" && mv -f -- "$vf_tmp" "$1"; }; then
    rm -f -- "$vf_tmp"
    return 1
  fi
}

# vf_served_cert HOST:PORT SERVER_NAME CERT KEY: the sha256 of the certificate a TLS server
# presents to a client holding CERT and KEY, as "<hex>  -".
vf_served_cert() {
  timeout 10 openssl s_client -connect "$1" -servername "$2" -cert "$3" -key "$4" \
    </dev/null 2>/dev/null | openssl x509 -outform DER | sha256sum
}
