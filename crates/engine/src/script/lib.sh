# virtfleet's fixed shell functions, sent ahead of every remote script (POSIX sh, coreutils).
# Every runtime value reaches them as one quoted argument (engine::script::Script); nothing
# here is assembled by code. The tags of output lines ($VF_T_*) are set by the same script
# from engine::wire, so the producer and the parser share one definition.
# shellcheck shell=sh disable=SC2034

# A newline, and the whitespace of JSON.
vf_nl='
'
vf_ws=" 	$vf_nl"

# Where a Docker Engine keeps what vf_docker_store reads: Docker's defaults (variables only
# so that tests can point them at a fake host).
vf_docker_pidfile=/var/run/docker.pid
vf_docker_conf=/etc/docker/daemon.json
vf_docker_root=/var/lib/docker
vf_proc=/proc

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

# vf_read N FILE... MARKER...: the first N arguments are files read whole (each existing
# one), the rest applied markers (each announced even when absent), then the container store
# vf_containers found, if any. A symlink is not read through (it may point anywhere; the
# push replaces it). One awk reads them all: dash's `read` costs a system call per byte and
# printf one per line, thousands for a config.json, and a process start costs about a ms.
# A file that cannot be read whole (or no awk) ends the script: a merged file read short
# would be pushed without the host's own settings.
vf_read() {
  vf_n=$1
  shift
  vf_i=0
  for f; do
    vf_i=$((vf_i + 1))
    vf_kind=A
    if [ -f "$f" ] && [ ! -L "$f" ]; then vf_kind=M; fi
    if [ "$vf_i" -gt "$vf_n" ]; then
      set -- "$@" "$vf_kind$f"
    elif [ "$vf_kind" = M ]; then
      set -- "$@" "C$f"
    fi
  done
  shift "$vf_i"
  if [ -n "$vf_store" ]; then set -- "$@" "S$vf_store"; fi
  [ "$#" -gt 0 ] || return 0
  # Program operands, never options: every argument starts with its kind letter.
  awk -v c="$VF_T_CONTENT" -v m="$VF_T_MARKER" -v l="$VF_T_LINE" -v s="$VF_T_STORE" '
    BEGIN {
      for (i = 1; i < ARGC; i++) {
        kind = substr(ARGV[i], 1, 1)
        f = substr(ARGV[i], 2)
        if (kind == "S") {
          printf "%s ", s
          while ((getline line < f) > 0) printf "%s", line
          print ""
          continue
        }
        print (kind == "C" ? c : m) " " f
        if (kind == "A") continue
        while ((r = (getline line < f)) > 0) print l " " line
        close(f)
        if (r < 0) { print "virtfleet: cannot read " f > "/dev/stderr"; bad = 1 }
      }
      exit (bad ? 2 : 0)
    }' "$@" || { echo "virtfleet: the host's files could not be read (awk)" >&2; exit 1; }
  return 0
}

# vf_containers ENGINE NAME...: each container's ID (a recreated container has a new one).
# The engine's on-disk store, read where it is exact, costs a few ms of host CPU where
# starting `inspect` costs ~30 ms (docker) to ~200 ms (podman). Says so when the engine's
# command is missing, or when the engine cannot list containers at all (daemon down,
# socket not reachable for this user): not every container missing, the engine unusable.
vf_containers() {
  vf_engine=$1
  shift
  if ! vf_installed "$vf_engine"; then
    printf '%s %s\n' "$VF_T_NO_ENGINE" "$vf_engine"
    return 0
  fi
  case $vf_engine in
    podman) vf_podman_store && return 0 ;;
    docker) vf_docker_store "$@" && return 0 ;;
  esac
  vf_inspect "$vf_engine" "$@"
  return 0
}

# vf_installed COMMAND: whether COMMAND is an executable file (on the PATH unless it holds a
# '/'), by shell builtins. Not `command -v`: bash's names a non-executable file too.
vf_installed() {
  case $1 in */*) [ -f "$1" ] && [ -x "$1" ]; return ;; esac
  vf_p=$PATH:
  while [ -n "$vf_p" ]; do
    vf_d=${vf_p%%:*}
    vf_p=${vf_p#*:}
    if [ -f "${vf_d:-.}/$1" ] && [ -x "${vf_d:-.}/$1" ]; then return 0; fi
  done
  return 1
}

# vf_podman_store: finds podman's container store (containers.json lists them all) for
# vf_read, which prints it whole on one line after its tag.
vf_store=
vf_podman_store() {
  for f in /var/lib/containers/storage/overlay-containers/containers.json \
           /var/lib/containers/storage/vfs-containers/containers.json; do
    [ -f "$f" ] || continue
    vf_store=$f
    return 0
  done
  return 1
}

# vf_docker_store NAME...: "<docker store tag> <name> <ID>" per container from dockerd's
# data root, where <root>/containers/<ID>/config.v2.json holds "Name":"/<name>": one grep,
# no daemon call. Prints nothing and fails unless that is exact: the CLI talks to the
# default daemon (no DOCKER_HOST, DOCKER_CONTEXT, DOCKER_CONFIG, no current context),
# /var/run/docker.pid names a running dockerd whose command line moves neither its data root
# nor its config file, daemon.json names no root or one plain absolute path, the store is
# readable (root), and each name is a container name found in exactly one container.
vf_docker_store() {
  [ "$#" -gt 0 ] || return 0
  [ -z "${DOCKER_HOST-}${DOCKER_CONTEXT-}${DOCKER_CONFIG-}" ] || return 1
  if [ -e "${HOME-}/.docker/config.json" ]; then
    vf_slurp "$HOME/.docker/config.json" || return 1
    case $vf_text in *'"currentContext"'*) return 1 ;; esac
  fi
  vf_pid=
  { read -r vf_pid < "$vf_docker_pidfile"; } 2>/dev/null
  case $vf_pid in '' | *[!0-9]*) return 1 ;; esac
  vf_comm=
  { read -r vf_comm < "$vf_proc/$vf_pid/comm"; } 2>/dev/null
  [ "$vf_comm" = dockerd ] || return 1
  # The shell drops NUL bytes: the arguments run together. Without a '-' there are none.
  vf_slurp "$vf_proc/$vf_pid/cmdline" || return 1
  case $vf_text in *-*) vf_docker_args "$vf_proc/$vf_pid/cmdline" || return 1 ;; esac
  vf_root=$vf_docker_root
  if [ -e "$vf_docker_conf" ]; then
    vf_slurp "$vf_docker_conf" || return 1
    case $vf_text in
      *'"graph"'* | *'"data-root"'*'"data-root"'*) return 1 ;;
      *'"data-root"'*) vf_data_root || return 1 ;;
    esac
  fi
  for vf_n; do
    case $vf_n in '' | *[!A-Za-z0-9_.-]*) return 1 ;; esac
  done
  # The C locale: the pattern is ASCII, and grep starts faster without the host's locale.
  vf_found=$(LC_ALL=C grep -o -H -E '"Name":"/[A-Za-z0-9_.-]+"' -- \
    "$vf_root"/containers/*/config.v2.json 2>/dev/null) || return 1
  vf_found="$vf_nl$vf_found$vf_nl"
  vf_out=
  for vf_n; do
    vf_end="/config.v2.json:\"Name\":\"/$vf_n\"$vf_nl"
    case $vf_found in
      *"$vf_end"*"$vf_end"*) return 1 ;;
      *"$vf_end"*) ;;
      *) return 1 ;;
    esac
    vf_line=${vf_found%%"$vf_end"*}
    vf_line=${vf_line##*"$vf_nl"}
    vf_id=${vf_line##*/}
    [ "$vf_line" = "$vf_root/containers/$vf_id" ] && [ "${#vf_id}" -eq 64 ] || return 1
    case $vf_id in *[!0-9a-f]*) return 1 ;; esac
    vf_out="$vf_out$VF_T_DOCKER_STORE $vf_n $vf_id$vf_nl"
  done
  printf '%s' "$vf_out"
}

# vf_docker_args CMDLINE: fails when dockerd's arguments (a /proc cmdline file) may move its
# data root or its config file: --data-root, --graph, -g (also in a cluster such as -Dg),
# --config-file. One process.
vf_docker_args() {
  vf_args=$(tr '\0' '\n' < "$1") || return 1
  while IFS= read -r vf_a; do
    case $vf_a in --data-root* | --graph* | --config-file* | -[!-]*g*) return 1 ;; esac
  done <<EOF
$vf_args
EOF
}

# vf_data_root: vf_root from the "data-root" in daemon.json's text (vf_text): an absolute
# path without escapes; fails on anything else.
vf_data_root() {
  vf_r=${vf_text#*'"data-root"'}
  vf_r=${vf_r#"${vf_r%%[!"$vf_ws"]*}"}
  case $vf_r in :*) vf_r=${vf_r#:} ;; *) return 1 ;; esac
  vf_r=${vf_r#"${vf_r%%[!"$vf_ws"]*}"}
  case $vf_r in \"/*) vf_r=${vf_r#\"} ;; *) return 1 ;; esac
  case $vf_r in *\"*) vf_root=${vf_r%%\"*} ;; *) return 1 ;; esac
  case $vf_root in *\\* | *"$vf_nl"*) return 1 ;; esac
}

# vf_inspect ENGINE NAME...: the engine's own answer, "<container tag> <name> <ID>" lines;
# when that fails and the engine cannot even list containers, its error lines, tagged.
vf_inspect() {
  vf_engine=$1
  shift
  if ! { vf_err=$("$vf_engine" inspect --format "$VF_T_CONTAINER {{.Name}} {{.Id}}" -- "$@" \
    2>&1 >&3 3>&-); } 3>&1; then
    if ! vf_err=$("$vf_engine" ps -q 2>&1 >/dev/null); then
      printf '%s\n' "${vf_err:-$vf_engine ps failed}" | while IFS= read -r vf_l; do
        printf '%s %s\n' "$VF_T_ENGINE_ERROR" "$vf_l"
      done
    fi
  fi
}

# vf_slurp FILE: the file's text in vf_text, read by the shell itself (NUL bytes dropped).
vf_slurp() {
  vf_text=
  [ -r "$1" ] || return 1
  while IFS= read -r vf_l || [ -n "$vf_l" ]; do vf_text="$vf_text$vf_l$vf_nl"; done < "$1"
}

# vf_read_files FILE...: each file in order, framed as "<file tag> <size> <st_mode hex> <owner>
# <group>", its bytes and a newline, or "<absent tag>" (paths are not repeated: the caller knows
# them, whatever they hold).
# A symlink is absent: it is never read through (it may point anywhere).
vf_read_files() {
  for f; do
    if [ -f "$f" ] && [ ! -L "$f" ]; then
      printf '%s %s\n' "$VF_T_FILE" "$(stat -c '%s %f %U %G' -- "$f")"
      cat -- "$f"
      echo
    else
      printf '%s\n' "$VF_T_ABSENT"
    fi
  done
}

# vf_facts [nodename]: what Ansible's facts say of the host that plays use: "<nodename tag>
# <nodename>", then (unless only the nodename is asked for) `ip -o addr show` as it prints it
# (every line "<index>: <interface> ...", parsed on the workstation). Reads only; one
# process (ip), none for the nodename alone.
vf_facts() {
  # The kernel's hostname is uname's nodename; read by the shell, no process.
  if IFS= read -r vf_n < /proc/sys/kernel/hostname 2>/dev/null; then
    printf '%s %s\n' "$VF_T_NODENAME" "$vf_n"
  else
    printf '%s %s\n' "$VF_T_NODENAME" "$(uname -n)"
  fi
  [ "${1-}" != nodename ] || return 0
  if command -v ip >/dev/null 2>&1; then
    ip -o addr show
  else
    echo "virtfleet: facts: no 'ip' command (iproute2) on this host" >&2
    return 1
  fi
}

# vf_reach HOST SECONDS PORT...: from this host, whether each TCP port of HOST accepts a
# connection ("<reach tag> <port> open"), is refused ("... closed": nothing listens, the path
# is open) or fails otherwise ("... blocked": no route, a firewall rejecting); a port with no
# line did not answer within SECONDS (dropped on the way). All ports at once, by bash's
# /dev/tcp (one fork each; POSIX sh has no sockets); timeout stops the whole process group.
# "<reach tag> - tested" first says the test runs (no bash or timeout: no line at all).
vf_reach() {
  command -v bash >/dev/null 2>&1 && command -v timeout >/dev/null 2>&1 || return 0
  printf '%s - tested\n' "$VF_T_REACH"
  vf_host=$1
  vf_secs=$2
  shift 2
  # shellcheck disable=SC2016 # bash expands them, not this shell
  # Errors in English whatever the host's locale: "refused" is read from them.
  LC_ALL=C timeout "$vf_secs" bash -c '
    tag=$1 host=$2
    shift 2
    for p; do
      (if err=$( (exec 3<>"/dev/tcp/$host/$p") 2>&1 ); then s=open
       else case $err in *"connect: Connection refused"*) s=closed ;; *) s=blocked ;; esac
       fi
       printf "%s %s %s\n" "$tag" "$p" "$s") &
    done
    wait' vf_reach "$VF_T_REACH" "$vf_host" "$@"
  return 0
}

# vf_cat FILE: the file, or nothing when it does not exist or is a symlink.
vf_cat() {
  if [ -f "$1" ] && [ ! -L "$1" ]; then cat -- "$1"; fi
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

# vf_mkdir MODE DIR: creates DIR with MODE when it is missing, its missing parents 0755.
vf_mkdir() {
  [ -d "$2" ] && return 0
  (umask 022 && mkdir -p -- "$2") && chmod "$1" -- "$2"
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

# vf_started ENGINE CONTAINER...: per container (one inspect; a missing one prints nothing):
# "<tag> <name> <id> <running> s=<once if Kolla copies its files only at creation> <StartedAt>".
vf_started() {
  vf_engine=$1
  shift
  "$vf_engine" inspect --format "$VF_T_STARTED {{.Name}} {{.Id}} {{.State.Running}} s={{range .Config.Env}}{{if eq . \"KOLLA_CONFIG_STRATEGY=COPY_ONCE\"}}once{{end}}{{end}} {{.State.StartedAt}}" -- "$@" 2>/dev/null
  return 0
}

# vf_mtimes FILE...: the host's clock now, then when each file was last written or changed
# (mtime and ctime: a restore may set mtime back, never ctime), in seconds since the epoch.
vf_mtimes() {
  printf '%s %s\n' "$VF_T_NOW" "$(date +%s)"
  stat -c "$VF_T_MTIME %Y %Z %n" -- "$@" 2>/dev/null
  return 0
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

# vf_in ENGINE CONTAINER ARGV...: runs ARGV inside the container, or on the host itself when
# ENGINE is empty (a service of the host's own service manager).
vf_in() {
  vf_e=$1 vf_c=$2
  shift 2
  if [ -z "$vf_e" ]; then "$@"; else "$vf_e" exec -- "$vf_c" "$@"; fi
}

# vf_ready ENGINE CONTAINER RETRIES DELAY ARGV...: runs ARGV in the container (vf_in) until it
# succeeds, at most RETRIES times, DELAY seconds apart.
vf_ready() {
  vf_engine=$1 vf_container=$2 vf_retries=$3 vf_delay=$4
  shift 4
  vf_i=0
  until vf_out=$(vf_in "$vf_engine" "$vf_container" "$@" 2>&1 </dev/null); do
    vf_i=$((vf_i + 1))
    if [ "$vf_i" -ge "$vf_retries" ]; then
      printf '%s not ready after %s checks: %s\n' "${vf_container:-the service}" "$vf_retries" "$vf_out" >&2
      return 3
    fi
    sleep "$vf_delay"
  done
}

# vf_exec ENGINE CONTAINER ARGV...: runs ARGV in the container (vf_in), no stdin.
vf_exec() {
  vf_in "$@" </dev/null
}

# vf_exec_stdin ENGINE CONTAINER ARGV...: the same, fed this script's stdin (a secret).
vf_exec_stdin() {
  vf_engine=$1 vf_container=$2
  shift 2
  if [ -z "$vf_engine" ]; then "$@"; else "$vf_engine" exec -i -- "$vf_container" "$@"; fi
}

# vf_exec_timeout ENGINE CONTAINER SECONDS ARGV...: vf_exec, given up after SECONDS.
vf_exec_timeout() {
  vf_engine=$1 vf_container=$2 vf_seconds=$3
  shift 3
  vf_in "$vf_engine" "$vf_container" timeout "$vf_seconds" "$@" </dev/null
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
