# shellcheck shell=bash
#
# Shared functions for scripts/rig/up, scripts/rig/down, scripts/test and
# scripts/dev. This file is sourced, never executed, so it sets no shell
# options itself; every caller runs with `set -euo pipefail`.
#
# The rig keeps all of its state in one directory, $RIG_DIR, which defaults to
# /tmp/slipway-rig. It lives outside the repository because the `postgres` OS
# user must be able to traverse every parent directory of the database
# cluster, and a checkout under /root or a home directory usually forbids that.
#
# Every process the rig starts gets its PID written to $RIG_DIR/pids/NAME.
# scripts/rig/down only ever stops processes listed there, and only after
# checking that the PID still belongs to the expected program, so anything a
# person started by hand (for example a system dockerd) is never touched.

RIG_DOCKER_SOCK=/var/run/docker.sock
RIG_REGISTRY_PORT=5000
RIG_AUTH_REGISTRY_PORT=5001
RIG_REGISTRY_USER=slipway-ci
RIG_PG_PORT=55432
RIG_PG_URL="postgres://slipway:slipway@127.0.0.1:${RIG_PG_PORT}/postgres"
RIG_BASE_IMAGE=slipway-test/busybox:1
# Bump this when the base image recipe changes, so that `up` rebuilds images
# that an older version of the rig (or a person, by hand) tagged with the
# same name.
RIG_BASE_IMAGE_REVISION=1
RIG_CHROMIUM=/usr/bin/chromium
RIG_CHROMEDRIVER=/usr/bin/chromedriver

# Everything the test suite needs on a fresh Debian 12 machine. Chromium and
# its driver are for the dashboard tests; docker-compose (Debian's v1) only
# validates deploy/docker-compose.yml; python3-venv (which brings python3)
# hosts kubernetes-validate for deploy/kubernetes, and systemd provides
# `systemd-analyze verify` for deploy/systemd (it works without systemd
# running, so containers are fine). It is used by scripts/rig/up.
# shellcheck disable=SC2034
RIG_PACKAGES=(
  docker.io docker-registry apache2-utils busybox-static postgresql
  openssh-server git pkg-config libssl-dev curl ca-certificates
  docker-compose chromium chromium-driver python3-venv systemd
)
# A unit test runs the dashboard's live-log script (assets/build-log.js)
# under `node` to compare it with the Rust renderer, and fails without one.
# Debian's nodejs (which provides `node`) is added only when no node is on
# PATH, so a CI machine's own node (nvm, a setup action) is used as it is
# instead of being shadowed by a second one.
if ! command -v node >/dev/null 2>&1; then
  RIG_PACKAGES+=(nodejs)
fi

# The Kubernetes manifest validator scripts/test installs from PyPI into
# $RIG_DIR/venv-k8s. It bundles the Kubernetes API's JSON schemas, so the
# validation itself is offline. Changing the pin rebuilds the environment.
# shellcheck disable=SC2034
RIG_K8S_VALIDATE=kubernetes-validate==1.37.0
# openapi-spec-validator checks the document `slipway openapi` prints against
# the OpenAPI 3.1 specification's schema.
RIG_OPENAPI_VALIDATE=openapi-spec-validator==0.9.0

rig_log() {
  printf '%s\n' "$*"
}

rig_die() {
  printf 'rig: error: %s\n' "$*" >&2
  exit 1
}

# rig_init resolves the state directory to an absolute path and creates it.
# The directory must be world-traversable because postgres runs as its own
# user underneath it, so the mode is set explicitly instead of trusting the
# caller's umask.
# rig_track_started remembers which of the rig's processes run now, so that
# rig_stop_started (in an exit trap) stops only the ones started after it: a
# rig that was up before a command ran stays up after it.
rig_track_started() {
  local file
  declare -gA RIG_PREEXISTING=()
  for file in "$RIG_DIR"/pids/*; do
    [[ -f $file ]] && RIG_PREEXISTING[${file##*/}]=1
  done
  return 0
}

rig_stop_started() {
  local file name here
  local -a ours=()
  here=$(dirname -- "${BASH_SOURCE[0]}")
  for file in "$RIG_DIR"/pids/*; do
    [[ -f $file ]] || continue
    name=${file##*/}
    [[ -n ${RIG_PREEXISTING[$name]:-} ]] || ours+=("$name")
  done
  if ((${#ours[@]} > 0)); then
    bash "$here/down" "${ours[@]}" || true
  fi
}

rig_init() {
  RIG_DIR=$(realpath -m -- "${SLIPWAY_RIG_DIR:-/tmp/slipway-rig}")
  mkdir -p -- "$RIG_DIR/pids"
  chmod go+rx -- "$RIG_DIR"
}

# rig_lock serialises rig scripts that share a state directory, so that two
# concurrent `up` runs cannot both decide to start the same service. File
# descriptor 9 holds the lock; every long-lived child is started with `9>&-`
# so that it does not inherit the descriptor and keep the lock forever.
rig_lock() {
  exec 9>"$RIG_DIR/lock"
  if ! flock -w 600 9; then
    rig_die "timed out waiting for $RIG_DIR/lock (is another rig script stuck?)"
  fi
}

rig_unlock() {
  exec 9>&-
}

# rig_as_root runs a command with root privileges, through sudo when the
# caller is not root, because installing packages and starting dockerd need
# them.
rig_as_root() {
  if [[ $EUID -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo -- "$@"
  else
    rig_die "root privileges are needed to run: $*"
  fi
}

# rig_as_postgres runs a command as the `postgres` OS user, because the
# PostgreSQL server refuses to run as root. It changes to / first so that the
# PostgreSQL tools do not fail on a working directory they cannot read.
rig_as_postgres() {
  (
    cd /
    if [[ $EUID -eq 0 ]]; then
      runuser -u postgres -- "$@"
    else
      sudo -u postgres -- "$@"
    fi
  )
}

# rig_pkg_installed succeeds only when the package is fully installed.
# `dpkg -s` alone also succeeds for packages that were removed but whose
# configuration files remain, so the status field is checked instead.
rig_pkg_installed() {
  [[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true) == installed ]]
}

# rig_ensure_packages installs whichever of the given Debian packages are
# missing. The package lists are refreshed only when something has to be
# installed, so a warm run never touches the network.
rig_ensure_packages() {
  local pkg log="$RIG_DIR/apt.log"
  local -a missing=()
  for pkg in "$@"; do
    rig_pkg_installed "$pkg" || missing+=("$pkg")
  done
  if ((${#missing[@]} == 0)); then
    rig_log "packages: all present"
    return
  fi
  # Maintainer scripts would otherwise start the packages' system services,
  # and Debian's docker-registry service listens on :5000 (with an htpasswd
  # configuration that points at a directory), which would take the rig's
  # port. A temporary policy-rc.d that denies every start prevents that, on
  # sysvinit and systemd alike; the rig starts what it needs itself. An
  # existing policy-rc.d (common in containers) is left as it is.
  local policy=/usr/sbin/policy-rc.d added_policy=0 status=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\n# Temporary, written by slipway scripts/rig.\nexit 101\n' |
      rig_as_root tee "$policy" >/dev/null
    rig_as_root chmod 0755 "$policy"
    added_policy=1
  fi
  # Closing descriptor 9 keeps any process a maintainer script leaves behind
  # from holding the rig lock.
  rig_as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >"$log" 2>&1 9>&- &&
    rig_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
      --no-install-recommends "${missing[@]}" >>"$log" 2>&1 9>&- ||
    status=$?
  if ((added_policy)); then
    rig_as_root rm -f "$policy"
  fi
  if ((status != 0)); then
    tail -n 30 "$log" >&2 || true
    rig_die "apt-get failed; the full log is in $log"
  fi
  rig_log "packages: installed ${missing[*]}"
}

# rig_ensure_venv DIR REQUIREMENT... makes sure DIR is a Python virtual
# environment with these pip requirements, creating it only when it is
# missing, broken, or was made for other requirements, so a warm run never
# touches the network. Debian's /usr/bin/python3 is preferred over whatever
# python3 comes first on PATH (pyenv, conda, ...), whose removal or upgrade
# would break the environment; python3-venv provides its venv module.
rig_ensure_venv() {
  local dir=$1 python='' want have='' log="$1.log"
  shift
  want=$(printf '%s\n' "$@")
  if [[ -f $dir/.rig-requirements ]] && "$dir/bin/python" -c '' 2>/dev/null; then
    have=$(<"$dir/.rig-requirements")
  fi
  if [[ $have == "$want" ]]; then
    rig_log "venv ${dir##*/}: already present"
    return
  fi
  if [[ -x /usr/bin/python3 ]]; then
    python=/usr/bin/python3
  else
    python=$(command -v python3) || rig_die "python3 is not installed (install python3-venv)"
  fi
  rm -rf -- "$dir"
  # No prompts (CI has no stdin) and no self-update check.
  if ! { "$python" -m venv "$dir" &&
    PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
      "$dir/bin/python" -m pip install --quiet "$@"; } >"$log" 2>&1; then
    tail -n 20 "$log" >&2 || true
    rm -rf -- "$dir"
    rig_die "could not set up $dir with $python; the full log is in $log"
  fi
  printf '%s\n' "$want" >"$dir/.rig-requirements"
  rig_log "venv ${dir##*/}: installed $*"
}

# rig_pid_matches succeeds when PID is alive and its argv[0] is PROG. This
# guards against stopping an unrelated process that reused a recorded PID.
rig_pid_matches() {
  local pid=$1 prog=$2 argv0=''
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  # /proc/PID/cmdline is NUL-separated; reading up to the first NUL yields
  # argv[0]. Zombies and vanished processes have an empty or missing file.
  IFS= read -r -d '' argv0 2>/dev/null <"/proc/$pid/cmdline" || true
  [[ -n $argv0 && ${argv0##*/} == "$prog" ]]
}

# rig_recorded_pid prints the PID recorded under NAME if that process is still
# PROG, and otherwise deletes the stale record and fails.
rig_recorded_pid() {
  local name=$1 prog=$2 file="$RIG_DIR/pids/$1" pid=''
  [[ -f $file ]] || return 1
  pid=$(<"$file")
  if rig_pid_matches "$pid" "$prog"; then
    printf '%s\n' "$pid"
    return 0
  fi
  rm -f -- "$file"
  return 1
}

# rig_spawn NAME LOG COMMAND... starts COMMAND in the background in a session
# of its own, so that a Ctrl-C in the terminal that runs the tests does not
# also kill the rig, and records its PID as NAME. The intermediate shell
# writes its own PID and then execs the command, so the recorded PID is the
# command's PID even if setsid has to fork. The PID is left in RIG_SPAWNED_PID.
rig_spawn() {
  local name=$1 log=$2 file="$RIG_DIR/pids/$1" i
  shift 2
  rm -f -- "$file" "$file.tmp"
  # shellcheck disable=SC2016 # $$, $0 and $@ belong to the inner shell.
  setsid sh -c 'echo "$$" >"$0.tmp" && mv "$0.tmp" "$0" && exec "$@"' \
    "$file" "$@" </dev/null >>"$log" 2>&1 9>&- &
  for ((i = 0; i < 50; i++)); do
    [[ -s $file ]] && break
    sleep 0.1
  done
  [[ -s $file ]] || rig_die "could not start $name; see $log"
  RIG_SPAWNED_PID=$(<"$file")
}

# rig_stop_pid sends SIGTERM to PID and waits up to TIMEOUT seconds for it to
# exit, falling back to SIGKILL. It re-checks PROG before every signal.
rig_stop_pid() {
  local pid=$1 prog=$2 timeout=$3 i
  rig_pid_matches "$pid" "$prog" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < timeout * 10; i++)); do
    rig_pid_matches "$pid" "$prog" || return 0
    sleep 0.1
  done
  if rig_pid_matches "$pid" "$prog"; then
    rig_log "$prog (pid $pid) ignored SIGTERM for ${timeout} s; sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
}

# rig_ensure_docker makes sure a Docker Engine answers on the default socket,
# starting dockerd only when nothing answers there. Extra daemon flags, such
# as `--storage-driver=vfs --iptables=false` inside an unprivileged CI
# container, can be passed through SLIPWAY_DOCKERD_ARGS.
rig_ensure_docker() {
  local pid i log="$RIG_DIR/dockerd.log"
  local -a extra=()
  export DOCKER_HOST="unix://$RIG_DOCKER_SOCK"
  if docker info >/dev/null 2>&1; then
    if pid=$(rig_recorded_pid dockerd dockerd); then
      rig_log "docker: already running (pid $pid, started by the rig)"
    else
      rig_log "docker: already running"
    fi
    return
  fi
  command -v dockerd >/dev/null 2>&1 || rig_die "dockerd is not installed"
  [[ $EUID -eq 0 ]] || rig_die "docker is not running and only root can start dockerd"
  read -r -a extra <<<"${SLIPWAY_DOCKERD_ARGS:-}"
  : >"$log"
  rig_spawn dockerd "$log" dockerd --host "unix://$RIG_DOCKER_SOCK" "${extra[@]}"
  pid=$RIG_SPAWNED_PID
  for ((i = 0; i < 120; i++)); do
    if docker info >/dev/null 2>&1; then
      rig_log "docker: started (pid $pid)"
      return
    fi
    rig_pid_matches "$pid" dockerd || break
    sleep 0.5
  done
  rig_stop_pid "$pid" dockerd 20
  rm -f -- "$RIG_DIR/pids/dockerd"
  tail -n 30 "$log" >&2 || true
  rig_die "dockerd exited or did not become ready within 60 s; the full log is in $log"
}

# rig_http_status prints the HTTP status code of a request, or 000 when
# nothing answers.
rig_http_status() {
  curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$@" 2>/dev/null || true
}

# rig_random_hex prints 32 random hex digits without any pipeline that could
# die of SIGPIPE under `set -o pipefail`.
rig_random_hex() {
  od -An -N16 -tx1 /dev/urandom | tr -d ' \n'
}

# rig_registry_password prints the password of the authenticated registry,
# generating it on first use. It is kept so that a rerun of `up` (and a
# registry that is still running from an earlier run) agree on it.
rig_registry_password() {
  local file="$RIG_DIR/registry-password"
  if [[ ! -s $file ]]; then
    (
      umask 077
      rig_random_hex >"$file.tmp"
      mv -f -- "$file.tmp" "$file"
    )
  fi
  cat -- "$file"
}

# rig_write_registry_config writes the CNCF distribution configuration for a
# registry on 127.0.0.1:PORT, optionally with htpasswd authentication.
rig_write_registry_config() {
  local port=$1 auth=$2 dir="$RIG_DIR/registry-$1"
  mkdir -p -- "$dir/storage"
  # Delete is enabled so tests can clean up tags they pushed. The HTTP secret
  # is set explicitly because distribution otherwise logs a warning and
  # generates a new one at every start.
  cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: info
  formatter: text
  fields:
    service: slipway-rig-registry-$port
storage:
  filesystem:
    rootdirectory: '$dir/storage'
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:$port
  secret: $(rig_random_hex)
  headers:
    X-Content-Type-Options: [nosniff]
EOF
  if ((auth)); then
    # distribution only accepts bcrypt entries. If the htpasswd file were
    # missing it would invent a user with a random password, so the file is
    # written before the registry starts. The password is read from stdin
    # (-i) rather than passed as an argument (-b) to keep it out of `ps`.
    (
      umask 077
      htpasswd -Bin "$RIG_REGISTRY_USER" <<<"$(rig_registry_password)" >"$dir/htpasswd" 2>/dev/null
    )
    cat >>"$dir/config.yml" <<EOF
auth:
  htpasswd:
    realm: slipway-rig
    path: '$dir/htpasswd'
EOF
  fi
}

# rig_ensure_registry makes sure a registry answers on 127.0.0.1:PORT:
# 200 on /v2/ without authentication, or 401 when AUTH is 1.
rig_ensure_registry() {
  local port=$1 auth=$2 name="registry-$1" want=200 status pid i
  local log="$RIG_DIR/registry-$port.log"
  ((auth)) && want=401
  status=$(rig_http_status "http://127.0.0.1:$port/v2/")
  if [[ $status == "$want" ]]; then
    if ((auth)); then
      # A registry that asks for credentials is only reusable when this rig
      # knows them; otherwise the tests could not log in.
      [[ -s $RIG_DIR/registry-password ]] ||
        rig_die "127.0.0.1:$port is an authenticated registry the rig did not start (no $RIG_DIR/registry-password)"
      status=$(rig_http_status -u "$RIG_REGISTRY_USER:$(rig_registry_password)" "http://127.0.0.1:$port/v2/")
      [[ $status == 200 ]] ||
        rig_die "the registry on 127.0.0.1:$port rejects the password in $RIG_DIR/registry-password"
    fi
    if pid=$(rig_recorded_pid "$name" docker-registry); then
      rig_log "registry :$port: already running (pid $pid)"
    else
      rig_log "registry :$port: already running (not started by the rig)"
    fi
    return
  fi
  if [[ $status != 000 ]]; then
    rig_die "127.0.0.1:$port answers HTTP $status on /v2/ instead of $want; free the port"
  fi
  # A recorded registry that no longer answers is hung; replace it.
  if pid=$(rig_recorded_pid "$name" docker-registry); then
    rig_stop_pid "$pid" docker-registry 10
  fi
  rig_write_registry_config "$port" "$auth"
  # distribution lets REGISTRY_* environment variables override its
  # configuration, and Slipway's own settings use names like
  # REGISTRY_PASSWORD, so the registry runs with an empty environment.
  rig_spawn "$name" "$log" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    docker-registry serve "$RIG_DIR/registry-$port/config.yml"
  pid=$RIG_SPAWNED_PID
  for ((i = 0; i < 100; i++)); do
    if [[ $(rig_http_status "http://127.0.0.1:$port/v2/") == "$want" ]]; then
      rig_log "registry :$port: started (pid $pid)"
      return
    fi
    rig_pid_matches "$pid" docker-registry || break
    sleep 0.2
  done
  rig_stop_pid "$pid" docker-registry 10
  rm -f -- "$RIG_DIR/pids/$name"
  tail -n 20 "$log" >&2 || true
  rig_die "registry on 127.0.0.1:$port exited or did not become ready; the full log is in $log"
}

# rig_pg_bindir prints the directory of the newest installed PostgreSQL
# server binaries. The Debian wrappers in /usr/bin are avoided because they
# route commands to the system clusters, not to the rig's private one.
rig_pg_bindir() {
  local dir
  dir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1 || true)
  [[ -n $dir && -x $dir/postgres ]] || rig_die "no PostgreSQL server under /usr/lib/postgresql (install the postgresql package)"
  printf '%s\n' "$dir"
}

# rig_ensure_postgres runs a private PostgreSQL cluster in $RIG_DIR/pg that
# listens only on 127.0.0.1:$RIG_PG_PORT, and makes sure the `slipway` role
# can log in with a password and create the one database per test that the
# test suite needs.
rig_ensure_postgres() {
  local bin data="$RIG_DIR/pg" run="$RIG_DIR/pg-run" log="$RIG_DIR/postgres.log"
  local pid msg
  bin=$(rig_pg_bindir)
  if "$bin/pg_isready" -q -h 127.0.0.1 -p "$RIG_PG_PORT"; then
    if pid=$(rig_recorded_pid postgres postgres); then
      msg="already running (pid $pid)"
    else
      msg="already running (not started by the rig)"
    fi
  else
    rig_as_root install -d -o postgres -g postgres -m 0700 "$data"
    rig_as_root install -d -o postgres -g postgres -m 0755 "$run"
    rig_as_postgres test -w "$data" ||
      rig_die "the postgres user cannot reach $data; set SLIPWAY_RIG_DIR to a world-traversable path"
    if [[ ! -e $log ]]; then
      rig_as_root install -o postgres -g postgres -m 0640 /dev/null "$log"
    fi
    if ! rig_as_postgres test -s "$data/PG_VERSION"; then
      # Peer authentication on the private socket lets root administer the
      # cluster through `runuser -u postgres`; TCP connections need a
      # password, as they would against a real server.
      rig_as_postgres "$bin/initdb" -D "$data" -U postgres -E UTF8 --locale=C \
        --auth-local=peer --auth-host=scram-sha-256 >"$RIG_DIR/initdb.log" 2>&1 ||
        {
          tail -n 20 "$RIG_DIR/initdb.log" >&2
          rig_die "initdb failed; the full log is in $RIG_DIR/initdb.log"
        }
      printf "\ninclude_if_exists = 'slipway-rig.conf'\n" |
        rig_as_postgres tee -a "$data/postgresql.conf" >/dev/null
    fi
    # The settings live in their own file, rewritten at every start, so that
    # changes to this script reach existing clusters. Durability is switched
    # off because this cluster only ever holds throwaway test databases, and
    # max_connections is raised because many tests each open a pool.
    rig_as_postgres tee "$data/slipway-rig.conf" >/dev/null <<EOF
listen_addresses = '127.0.0.1'
port = $RIG_PG_PORT
unix_socket_directories = '$run'
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
    if ! rig_as_postgres "$bin/pg_ctl" -D "$data" -l "$log" -w -t 60 -s start 9>&-; then
      tail -n 20 "$log" >&2 || true
      rig_die "PostgreSQL did not start; the full log is in $log"
    fi
    pid=$(rig_as_postgres head -n 1 "$data/postmaster.pid")
    printf '%s\n' "$pid" >"$RIG_DIR/pids/postgres"
    msg="started (pid $pid)"
  fi
  # The role is (re)asserted whenever the rig's own socket exists, which
  # also repairs a cluster whose role was altered by a test.
  if [[ -S $run/.s.PGSQL.$RIG_PG_PORT ]]; then
    rig_as_postgres "$bin/psql" -X -q -h "$run" -p "$RIG_PG_PORT" -d postgres \
      -v ON_ERROR_STOP=1 >/dev/null <<'EOF'
SELECT 'CREATE ROLE slipway' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'slipway')
\gexec
ALTER ROLE slipway WITH LOGIN CREATEDB PASSWORD 'slipway';
EOF
  fi
  PGCONNECT_TIMEOUT=5 "$bin/psql" -X -Atq "$RIG_PG_URL" -c 'SELECT 1' >/dev/null ||
    rig_die "cannot log in with $RIG_PG_URL"
  rig_log "postgres :$RIG_PG_PORT: $msg"
}

# rig_ensure_base_image builds the local base image that test Dockerfiles use,
# because tests cannot pull anything from a public registry. It is a busybox
# root filesystem imported as a single layer. The label identifies images
# built by this recipe, so a different image under the same tag is replaced.
rig_ensure_base_image() {
  local rev busybox root applet out
  rev=$(docker image inspect --format '{{ index .Config.Labels "org.slipway.rig.base-image" }}' \
    "$RIG_BASE_IMAGE" 2>/dev/null || true)
  if [[ $rev == "$RIG_BASE_IMAGE_REVISION" ]]; then
    rig_log "base image $RIG_BASE_IMAGE: already present"
    return
  fi
  for busybox in /usr/bin/busybox /bin/busybox ''; do
    [[ -n $busybox && -x $busybox ]] && break
  done
  [[ -n $busybox ]] || rig_die "busybox not found (install busybox-static)"
  # A dynamically linked busybox would not run inside an image that has no
  # C library.
  if ldd "$busybox" >/dev/null 2>&1; then
    rig_die "$busybox is dynamically linked; install busybox-static"
  fi
  root=$(mktemp -d "$RIG_DIR/base-image.XXXXXX")
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp,var/tmp}
  chmod 0755 "$root"
  chmod 1777 "$root/tmp" "$root/var/tmp"
  chmod 0700 "$root/root"
  cp -- "$busybox" "$root/bin/busybox"
  for applet in sh echo cat ls mkdir cp mv rm true false test env sleep printf \
    grep sed wc head tail id touch chmod ln pwd uname tr cut sort uniq \
    basename dirname find xargs date stat tee readlink expr seq \
    sha256sum md5sum tar gzip whoami hostname; do
    ln -s busybox "$root/bin/$applet"
  done
  # Minimal account databases, so that `USER nobody` and `id` work in test
  # Dockerfiles.
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  tar --numeric-owner --owner=0 --group=0 -C "$root" -c . |
    docker import \
      --change 'CMD ["/bin/sh"]' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change "LABEL org.slipway.rig.base-image=$RIG_BASE_IMAGE_REVISION" \
      - "$RIG_BASE_IMAGE" >/dev/null
  rm -rf -- "$root"
  # Running a container also proves that the engine can start containers,
  # which every build with a RUN step needs.
  out=$(docker run --rm --network none "$RIG_BASE_IMAGE" sh -c 'echo ok' 2>&1 || true)
  [[ $out == ok ]] || rig_die "the base image does not run: $out"
  rig_log "base image $RIG_BASE_IMAGE: built"
}

# rig_write_env writes $RIG_DIR/env, the `export NAME=value` lines that the
# test command sources. It is replaced atomically and readable only by its
# owner because it contains the registry password.
rig_write_env() {
  local file="$RIG_DIR/env"
  (
    umask 077
    {
      printf '# Written by scripts/rig/up; source it before running the tests.\n'
      printf 'export %s=%q\n' \
        DOCKER_HOST "unix://$RIG_DOCKER_SOCK" \
        SLIPWAY_TEST_REGISTRY "127.0.0.1:$RIG_REGISTRY_PORT" \
        SLIPWAY_TEST_AUTH_REGISTRY "127.0.0.1:$RIG_AUTH_REGISTRY_PORT" \
        SLIPWAY_TEST_AUTH_REGISTRY_USER "$RIG_REGISTRY_USER" \
        SLIPWAY_TEST_AUTH_REGISTRY_PASSWORD "$(rig_registry_password)" \
        SLIPWAY_TEST_POSTGRES_URL "$RIG_PG_URL" \
        SLIPWAY_TEST_BASE_IMAGE "$RIG_BASE_IMAGE"
      if [[ -x $RIG_CHROMIUM ]]; then
        printf 'export %s=%q\n' SLIPWAY_TEST_CHROMIUM "$RIG_CHROMIUM"
      fi
      if [[ -x $RIG_CHROMEDRIVER ]]; then
        printf 'export %s=%q\n' SLIPWAY_TEST_CHROMEDRIVER "$RIG_CHROMEDRIVER"
      fi
    } >"$file.tmp"
    mv -f -- "$file.tmp" "$file"
  )
  rig_log "env: wrote $file"
}

# rig_component_prog maps a name recorded under $RIG_DIR/pids to the program
# that must own the recorded PID.
rig_component_prog() {
  case $1 in
    dockerd) printf 'dockerd\n' ;;
    registry-*) printf 'docker-registry\n' ;;
    postgres) printf 'postgres\n' ;;
    *) return 1 ;;
  esac
}

# rig_stop_component stops one recorded process and removes its record.
rig_stop_component() {
  local name=$1 file="$RIG_DIR/pids/$1" prog pid bin
  [[ -f $file ]] || return 0
  if ! prog=$(rig_component_prog "$name"); then
    rig_log "$name: unknown record $file; leaving it alone" >&2
    return 0
  fi
  pid=$(<"$file")
  if ! rig_pid_matches "$pid" "$prog"; then
    rm -f -- "$file"
    rig_log "$name: not running (stale record removed)"
    return 0
  fi
  case $name in
    postgres)
      # pg_ctl shuts down exactly the cluster in the rig's data directory;
      # the signal is only a fallback for a damaged data directory.
      bin=$(rig_pg_bindir)
      rig_as_postgres "$bin/pg_ctl" -D "$RIG_DIR/pg" -m fast -w -t 60 -s stop 9>&- ||
        rig_stop_pid "$pid" "$prog" 30
      ;;
    dockerd)
      # dockerd stops its containers and its own containerd before exiting,
      # which can take a while.
      rig_stop_pid "$pid" "$prog" 60
      ;;
    *)
      rig_stop_pid "$pid" "$prog" 15
      ;;
  esac
  rm -f -- "$file"
  rig_log "$name: stopped (pid $pid)"
}
