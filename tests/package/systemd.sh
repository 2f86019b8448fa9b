#!/usr/bin/env bash
# docs/OPERATIONS.md's systemd commands, run for real: a Debian 12 machine booted with
# systemd-nspawn (its own systemd as PID 1, journald, D-Bus), the package installed in it with
# dpkg, and the guide's commands run in it as root, as written: `systemctl status ochered`,
# `curl /ready`, the first authority, `systemctl edit` (a drop-in), `systemctl restart`,
# backup, `systemctl stop` / restore / `systemctl start`, `journalctl -u ochered`, an upgrade,
# remove and purge. It also checks that the unit's confinement is in force on the running
# process (user, capabilities, no_new_privs, seccomp, read-only system, private /tmp and
# /dev) and that Restart=on-failure restarts a killed server.
#
# As root, on a Debian (or similar) machine with systemd-nspawn (package systemd-container)
# and debootstrap. The machine's root is made once with debootstrap from the Debian mirror
# and kept in $OCHERED_NSPAWN_CACHE (default /var/tmp/ochered-nspawn/base); each run boots a
# fresh copy of it, so every run starts from an empty machine. The host's PID 1 need not be
# systemd (the container is started with --register=no --keep-unit, and the commands are run
# in it with nsenter, the way `machinectl shell` would on a systemd host).
#
#   bash tests/package/systemd.sh [PACKAGE.deb]
#
# Without an argument the package is built as tests/package/run.sh builds it (cargo deb).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac
cache="${OCHERED_NSPAWN_CACHE:-/var/tmp/ochered-nspawn}"
base="$cache/base"
machine="$cache/machine"
mirror="${OCHERED_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
started=$SECONDS

fail() { echo "systemd test: $*" >&2; exit 1; }
step() { printf '\n--- [%3ss] %s\n' "$((SECONDS - started))" "$*"; }
[ "$(id -u)" = 0 ] || fail "run as root"
for tool in systemd-nspawn debootstrap nsenter; do
  command -v "$tool" >/dev/null || fail "$tool is missing (apt-get install systemd-container debootstrap)"
done

nspawn_pid=""
leader=""
cleanup() {
  local status=$?
  if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
    if [ "$status" != 0 ]; then
      echo "--- the machine's journal (last 60 lines)" >&2
      inside journalctl --no-pager -n 60 >&2 || true
    fi
    # SIGRTMIN+4 asks the container's systemd to power off; SIGKILL if it does not within 30 s.
    kill -s RTMIN+4 "$leader" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$nspawn_pid" 2>/dev/null || true
    wait "$nspawn_pid" 2>/dev/null || true
  fi
  rm -rf "$machine"
  exit "$status"
}
trap cleanup EXIT

# --- The package.
if [ $# -ge 1 ]; then
  deb=$(realpath "$1")
else
  deb=$(cargo deb --strip --output "$target/debian/" -- --locked | tail -n 1)
fi
[ -f "$deb" ] || fail "no package at $deb"
echo "package: $deb"

# --- The machine: Debian 12 with systemd, made once (about a minute and 250 MB), then copied.
if [ ! -x "$base/usr/lib/systemd/systemd" ]; then
  step "debootstrap bookworm into $base (once)"
  rm -rf "$base.new"
  mkdir -p "$cache"
  debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,dbus,curl,ca-certificates,adduser,less \
    bookworm "$base.new" "$mirror" >"$cache/debootstrap.log" 2>&1 \
    || { tail -n 20 "$cache/debootstrap.log" >&2; fail "debootstrap failed"; }
  echo ochered-test >"$base.new/etc/hostname"
  # An empty machine-id: each boot of a copy makes its own.
  : >"$base.new/etc/machine-id"
  rm -rf "$base.new/var/cache/apt/archives/"*.deb
  mv "$base.new" "$base"
fi
step "a fresh copy of the machine"
rm -rf "$machine"
cp -a "$base" "$machine"
mkdir -p "$machine/srv/package"

step "boot it (systemd-nspawn --boot, private network: only its own loopback)"
systemd-nspawn --quiet --boot --directory="$machine" --machine=ochered-test \
  --register=no --keep-unit --private-network --console=pipe \
  --bind-ro="$(dirname "$deb")":/srv/package </dev/null >"$cache/boot.log" 2>&1 &
nspawn_pid=$!
leader=""
for _ in $(seq 1 100); do
  leader=$(pgrep -P "$nspawn_pid" | head -n 1) && [ -n "$leader" ] && break
  sleep 0.1
done
[ -n "$leader" ] || { cat "$cache/boot.log" >&2; fail "systemd-nspawn did not start the machine"; }
# A root shell in the machine: its mount, PID, network, UTS, IPC and cgroup namespaces, a
# clean environment (what `machinectl shell` gives).
inside() {
  nsenter --target "$leader" --all -- \
    env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb "$@"
}
sh_inside() { inside /bin/sh -ec "$1"; }
for _ in $(seq 1 120); do
  state=$(inside systemctl is-system-running 2>/dev/null) || true
  case "$state" in running | degraded) break ;; esac
  sleep 0.5
done
echo "system: $state ($(inside systemctl --version | head -n 1))"
[ "$state" = running ] || { inside systemctl --failed --no-pager >&2 || true; fail "the machine did not boot cleanly: $state"; }

# --- Section 2: install. The package's scripts enable and start the service.
step "dpkg -i (section 2)"
sh_inside "dpkg -i /srv/package/$(basename "$deb")"
step "systemctl status ochered"
wait_ready() {
  for _ in $(seq 1 120); do
    inside curl -fsS http://127.0.0.1:8080/ready >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  sh_inside 'systemctl status ochered; journalctl -u ochered --no-pager -n 50' >&2 || true
  fail "/ready never answered 200"
}
wait_ready
inside systemctl status ochered
step "curl -s http://127.0.0.1:8080/ready"
ready=$(inside curl -s http://127.0.0.1:8080/ready)
echo "$ready"
[ "$ready" = '{"status":"ready","authorities":[],"writes":[]}' ] || fail "unexpected /ready: $ready"

# --- The unit's confinement, on the running process.
step "the confinement in force (/proc of the main process)"
pid=$(inside systemctl show -P MainPID ochered)
[ "$pid" -gt 0 ] || fail "no main process"
status=$(inside cat "/proc/$pid/status")
field() { sed -n "s/^$1:[[:space:]]*//p" <<<"$status"; }
echo "MainPID=$pid Uid=$(field Uid | cut -f1) CapEff=$(field CapEff) CapBnd=$(field CapBnd) NoNewPrivs=$(field NoNewPrivs) Seccomp=$(field Seccomp)"
uid=$(inside id -u ochered)
[ "$(field Uid | cut -f1)" = "$uid" ] || fail "the server does not run as ochered"
[ "$(field CapEff)" = 0000000000000000 ] || fail "the server has capabilities: $(field CapEff)"
[ "$(field CapBnd)" = 0000000000000000 ] || fail "the server's bounding set is not empty: $(field CapBnd)"
[ "$(field NoNewPrivs)" = 1 ] || fail "no_new_privs is not set"
[ "$(field Seccomp)" = 2 ] || fail "no seccomp filter"
# The server's view of the file system, from inside its own mount namespace.
as_service() { inside nsenter --target "$pid" --mount -- "$@"; }
as_service sh -c 'touch /usr/ochered-probe' 2>/dev/null && fail "/usr is writable for the service"
as_service sh -c 'touch /etc/ochered-probe' 2>/dev/null && fail "/etc is writable for the service"
as_service sh -c 'touch /var/lib/ochered/.probe && rm /var/lib/ochered/.probe' || fail "/var/lib/ochered is not writable"
inside sh -c 'mkdir -p /home/operator && echo home > /home/operator/probe && echo host > /tmp/ochered-probe'
as_service test -e /home/operator/probe && fail "/home is visible to the service"
as_service test -e /root/.profile && fail "/root is visible to the service"
as_service test -e /tmp/ochered-probe && fail "/tmp is not private"
as_service sh -c 'touch /sys/fs/cgroup/ochered-probe' 2>/dev/null && fail "the cgroup tree is writable for the service"
as_service grep -q ' /proc .*hidepid=invisible,subset=pid' /proc/self/mountinfo || fail "/proc is not ProtectProc=invisible, ProcSubset=pid"
echo "/dev of the service: $(as_service ls /dev | tr '\n' ' ')"
# LimitNOFILE=65536: where PID 1 cannot raise a hard limit (no CAP_SYS_RESOURCE, as in a VM
# that withholds it), systemd sets the closest it can; show what the server got.
echo "open files: $(inside sed -n 's/^Max open files *//p' "/proc/$pid/limits")"
as_service test -e /dev/vda -o -e /dev/sda -o -e /dev/mem && fail "/dev is not private"
inside systemd-analyze security ochered --no-pager | tail -n 1

# --- Section 3: the first authority, with the installed secret.
step "the first authority (section 3)"
sh_inside '
TOKEN=$(ochered token --role admin --sub it-admin --jwt-secret-file /etc/ochered/secrets/jwt_secret)
curl -s -X POST http://127.0.0.1:8080/api/v1/authorities -H "Authorization: Bearer $TOKEN" \
  -H "Content-Type: application/json" \
  -d '"'"'{"id":"novosibirsk","name":"Novosibirsk","time_zone":"Asia/Novosibirsk"}'"'"'
echo'
inside curl -fsS http://127.0.0.1:8080/ready | grep -q '"novosibirsk"' || fail "/ready does not list the new authority"

# --- Section 2, "The unit": systemctl edit, run by an editor that is a script (what an
# operator types in the editor), then the same drop-in written as a file.
step "systemctl edit ochered (SYSTEMD_EDITOR: a script adding the [Service] lines)"
cat >"$machine/root/add-log-level" <<'EDITOR'
#!/bin/sh
# Called by `systemctl edit` with the temporary drop-in; adds the lines between its markers,
# where an operator would type them.
set -e
sed -i '/^### Anything between here and the comment below/a [Service]\nEnvironment=OCHERED_LOG=info,ochered_api=debug' "$1"
EDITOR
chmod +x "$machine/root/add-log-level"
# systemctl edit wants a terminal ("Cannot edit units if not on a tty"): script(1) gives it one.
inside script -qec 'SYSTEMD_EDITOR=/root/add-log-level systemctl edit ochered' /dev/null
inside cat /etc/systemd/system/ochered.service.d/override.conf
inside systemctl show -P Environment ochered | grep -q 'OCHERED_LOG=info,ochered_api=debug' \
  || fail "the drop-in is not in force after systemctl edit"
pid_before=$(inside systemctl show -P MainPID ochered)
step "systemctl restart ochered (section 3)"
inside systemctl restart ochered
wait_ready
pid=$(inside systemctl show -P MainPID ochered)
[ "$pid" != "$pid_before" ] || fail "systemctl restart did not restart the server"
inside cat "/proc/$pid/environ" | tr '\0' '\n' | grep -qx 'OCHERED_LOG=info,ochered_api=debug' \
  || fail "the restarted server does not have the drop-in's environment"
inside curl -fsS http://127.0.0.1:8080/metrics | grep -q '^ochered_replay_events{authority="novosibirsk"} 1$' \
  || fail "the restarted server did not replay novosibirsk"
step "systemctl revert ochered; the same drop-in written as a file, without an editor"
inside systemctl revert ochered
inside systemctl show -P Environment ochered | grep -q 'ochered_api=debug' && fail "systemctl revert left the drop-in"
pid_before=$(inside systemctl show -P MainPID ochered)
sh_inside "
mkdir -p /etc/systemd/system/ochered.service.d
printf '[Service]\\nEnvironment=OCHERED_LOG=info,ochered_api=debug\\n' > /etc/systemd/system/ochered.service.d/override.conf
systemctl daemon-reload
systemctl restart ochered"
wait_ready
pid=$(inside systemctl show -P MainPID ochered)
inside cat "/proc/$pid/environ" | tr '\0' '\n' | grep -qx 'OCHERED_LOG=info,ochered_api=debug' \
  || fail "the server does not have the written drop-in's environment"
inside systemctl cat ochered | grep -A2 '^# /etc/systemd/system/ochered.service.d/override.conf$'
inside systemctl revert ochered
inside systemctl restart ochered
wait_ready

# --- Restart=on-failure: a killed server comes back by itself (RestartSec=2s).
step "Restart=on-failure: kill -KILL the main process"
pid_before=$(inside systemctl show -P MainPID ochered)
sh_inside "kill -KILL $pid_before"
for _ in $(seq 1 40); do
  pid=$(inside systemctl show -P MainPID ochered)
  [ "$pid" != 0 ] && [ "$pid" != "$pid_before" ] && break
  sleep 0.5
done
[ "$pid" != 0 ] && [ "$pid" != "$pid_before" ] || fail "systemd did not restart the killed server"
wait_ready
echo "restarted: MainPID $pid_before -> $pid (NRestarts=$(inside systemctl show -P NRestarts ochered))"

# --- Section 5: a backup while the service runs, as written.
step "ochered backup (section 5)"
backup=/var/backups/ochered/ochered-20250301T023000.backup
sh_inside "
install -d -o ochered -g ochered -m 0750 /var/backups/ochered
runuser -u ochered -- ochered backup --database-url sqlite:///var/lib/ochered/ochered.db \\
  --key /etc/ochered/secrets/checkpoint.key \\
  --out $backup"
# An authority after the backup: the restore must take the log back to before it.
sh_inside '
TOKEN=$(ochered token --role admin --sub it-admin --jwt-secret-file /etc/ochered/secrets/jwt_secret)
curl -fsS -o /dev/null -X POST http://127.0.0.1:8080/api/v1/authorities -H "Authorization: Bearer $TOKEN" \
  -H "Content-Type: application/json" -d '"'"'{"id":"after-backup","name":"After","time_zone":"Europe/Moscow"}'"'"''

# --- Section 6: stop, restore, start, verify.
step "systemctl stop ochered; ochered restore; systemctl start ochered (section 6)"
inside systemctl stop ochered
[ "$(inside systemctl show -P Result ochered)" = success ] || fail "the server did not stop cleanly on SIGTERM"
inside systemctl is-active ochered >/dev/null && fail "still active after systemctl stop"
sh_inside "
runuser -u ochered -- ochered restore --from $backup \\
  --database-url sqlite:///var/lib/ochered/ochered.db --public-key /etc/ochered/checkpoint.pub --force"
inside systemctl start ochered
wait_ready
ready=$(inside curl -fsS http://127.0.0.1:8080/ready)
echo "$ready"
grep -q '"novosibirsk"' <<<"$ready" || fail "the restored log lacks novosibirsk"
grep -q '"after-backup"' <<<"$ready" && fail "the restored log has an authority made after the backup"
sh_inside '
ochered verify --database-url sqlite:///var/lib/ochered/ochered.db \
  --checkpoint /var/lib/ochered/ochered.db.backup-checkpoint.json --public-key /etc/ochered/checkpoint.pub'

# --- Section 4 and 8: the journal.
step "journalctl -u ochered (sections 4 and 8)"
journal=$(inside journalctl -u ochered --no-pager)
grep -c . <<<"$journal" | sed 's/^/journal lines: /'
grep -q 'listening; open http://127.0.0.1:8080/' <<<"$journal" || fail "the journal lacks the server's start"
grep -q 'Started ochered.service' <<<"$journal" || fail "the journal lacks systemd's start"
inside journalctl -u ochered -n 100 --no-pager | tail -n 5
inside journalctl -u ochered --no-pager | grep novosibirsk | tail -n 3

# --- Section 7: an upgrade (the same package again): restarted, secrets and log kept.
step "dpkg -i over the running installation (section 7)"
secrets_sum=$(inside sh -c 'cat /etc/ochered/secrets/*' | sha256sum)
pid_before=$(inside systemctl show -P MainPID ochered)
sh_inside "dpkg -i /srv/package/$(basename "$deb")"
wait_ready
pid=$(inside systemctl show -P MainPID ochered)
[ "$pid" != "$pid_before" ] || fail "the upgrade did not restart the server"
[ "$(inside sh -c 'cat /etc/ochered/secrets/*' | sha256sum)" = "$secrets_sum" ] || fail "the upgrade changed the secrets"
inside curl -fsS http://127.0.0.1:8080/ready | grep -q '"novosibirsk"' || fail "the upgrade lost the log"

# --- Section 10: remove keeps the log, the secrets and the user; purge deletes them.
step "dpkg --remove ochered; dpkg --purge ochered (section 10)"
inside dpkg --remove ochered
inside systemctl is-active ochered >/dev/null && fail "the service runs after dpkg --remove"
inside test -e /usr/bin/ochered && fail "/usr/bin/ochered is left after dpkg --remove"
inside test -s /var/lib/ochered/ochered.db || fail "dpkg --remove deleted the log"
inside test -s /etc/ochered/secrets/person_secret || fail "dpkg --remove deleted the secrets"
inside id ochered >/dev/null || fail "dpkg --remove deleted the user"
inside dpkg --purge ochered
for path in /var/lib/ochered /etc/ochered /lib/systemd/system/ochered.service /etc/systemd/system/multi-user.target.wants/ochered.service; do
  inside test -e "$path" && fail "$path is left after purge"
done
inside id ochered >/dev/null 2>&1 && fail "the ochered user is left after purge"

step "power off"
kill -s RTMIN+4 "$leader"
wait "$nspawn_pid" || true
nspawn_pid=""
echo "systemd test: installed, served, confined, edited, restarted, backed up, restored, upgraded and purged under systemd in $((SECONDS - started)) s"
