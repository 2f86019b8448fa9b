#!/usr/bin/env bash
# The Debian package end to end, as root on a Debian machine: builds it with cargo-deb (release
# profile), installs it with dpkg (twice: the second is an upgrade and must keep the secrets),
# checks the unit, starts the server the way the unit's ExecStart does, as the unit's user in
# its working directory with its environment (systemd itself need not run), checks /ready and
# an authority created with a token made from the installed secret, takes and verifies a
# backup with the installed checkpoint key, stops the server with SIGTERM, purges the package
# and checks that nothing of it is left. Needs cargo-deb, dpkg, curl and setpriv (util-linux).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$root/$target" ;; esac

fail() { echo "package test: $*" >&2; exit 1; }
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then kill "$server_pid" || true; fi
  # Never leave the package behind on the machine, even after a failure.
  if dpkg-query -W -f='${Status}' ochered 2>/dev/null | grep -q 'ok installed'; then
    dpkg --purge ochered >/dev/null || true
  fi
}
trap cleanup EXIT

# --- Build. The last line cargo-deb prints is the package's path.
deb=$(cargo deb --strip --output "$target/debian/" -- --locked | tail -n 1)
[ -f "$deb" ] || fail "cargo deb did not produce a package ($deb)"
echo "package: $deb ($(du -h "$deb" | cut -f1))"
dpkg-deb --info "$deb" | sed -n 's/^ \(Package\|Version\|Depends\|Installed-Size\):/  \1:/p'
contents=$(dpkg-deb --contents "$deb")
for f in ./usr/bin/ochered ./etc/ochered/ochered.toml ./usr/share/doc/ochered/OPERATIONS.md; do
  grep -q " $f\$" <<<"$contents" || fail "$f is not in the package"
done

# --- Install, then install again (an upgrade: the user, the secrets and the data stay).
dpkg -i "$deb" >/dev/null
getent passwd ochered >/dev/null || fail "no ochered user after install"
secrets_sum=$(cat /etc/ochered/secrets/* | sha256sum)
dpkg -i "$deb" >/dev/null
[ "$(cat /etc/ochered/secrets/* | sha256sum)" = "$secrets_sum" ] || fail "an upgrade changed the secrets"
for f in jwt_secret person_secret data_key checkpoint.key; do
  perms=$(stat -c '%U:%G %a' "/etc/ochered/secrets/$f")
  [ "$perms" = "root:ochered 640" ] || fail "/etc/ochered/secrets/$f is $perms, expected root:ochered 640"
done
[ "$(stat -c '%U:%G %a' /var/lib/ochered)" = "ochered:ochered 750" ] || fail "/var/lib/ochered: $(stat -c '%U:%G %a' /var/lib/ochered)"

unit=$(dpkg -L ochered | grep '/systemd/system/ochered.service$') || fail "no unit in the package"
if command -v systemd-analyze >/dev/null 2>&1; then
  # Offline checks of the unit's syntax and of its hardening (no running systemd needed).
  systemd-analyze verify "$unit"
  systemd-analyze security --offline=yes "$unit" 2>/dev/null | tail -n 1 || true
fi
value() { sed -n "s/^$1=//p" "$unit" | tail -n 1; }
user=$(value User); group=$(value Group); workdir=$(value WorkingDirectory)
exec_start=$(value ExecStart)
grep -qx 'Restart=on-failure' "$unit" || fail "the unit does not restart on failure"
mapfile -t environment < <(sed -n 's/^Environment=//p' "$unit")
echo "unit: User=$user WorkingDirectory=$workdir ExecStart=$exec_start"

# --- Start it as the unit would, on a free loopback port (the only change: OCHERED_LISTEN;
# port 0 lets the kernel choose, and the server logs the address it got).
log="$target/debian/serve.log"
start_server() {
  # shellcheck disable=SC2086 # ExecStart is split into words, as systemd does.
  (cd "$workdir" && exec env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "${environment[@]}" \
    OCHERED_LISTEN="127.0.0.1:0" \
    setpriv --reuid="$user" --regid="$group" --init-groups -- $exec_start) >"$log" 2>&1 &
  server_pid=$!
  base=""
  for _ in $(seq 1 240); do
    kill -0 "$server_pid" 2>/dev/null || { cat "$log" >&2; fail "the server exited"; }
    base=$(grep -o 'open http://127\.0\.0\.1:[0-9]*' "$log" | head -n 1 | sed 's/^open //') || true
    [ -n "$base" ] && curl -fsS "$base/ready" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  cat "$log" >&2; fail "/ready never answered 200"
}
stop_server() {
  kill -TERM "$server_pid"
  wait "$server_pid" || { cat "$log" >&2; fail "the server did not exit cleanly on SIGTERM"; }
  server_pid=""
}
start_server
curl -fsS "$base/ready" || { cat "$log" >&2; fail "/ready never answered 200"; }
echo
[ "$(ps -o user= -p "$server_pid" | tr -d ' ')" = "$user" ] || fail "the server does not run as $user"
grep -q 'development' "$log" && { cat "$log" >&2; fail "the installed server uses a development secret"; }
# Receipts and tree heads are signed with the installed key, whose public half auditors keep.
curl -fsS "$base/.well-known/ochered/public-key" | cmp -s - /etc/ochered/checkpoint.pub \
  || fail "the server does not sign receipts and heads with the installed key"

# A token from the installed secret creates an authority; /ready then lists it.
token=$(/usr/bin/ochered token --role admin --sub package-test --jwt-secret-file /etc/ochered/secrets/jwt_secret)
status=$(curl -sS -o /dev/null -w '%{http_code}' -X POST "$base/api/v1/authorities" \
  -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  -d '{"id":"pkg-city","name":"Package city","time_zone":"Europe/Moscow"}')
[ "$status" = 201 ] || fail "creating an authority answered $status"
curl -fsS "$base/ready" | grep -q '"pkg-city"' || fail "/ready does not list the new authority"
db=/var/lib/ochered/ochered.db
[ "$(stat -c %U "$db")" = "$user" ] || fail "$db is not owned by $user"

# A backup while it runs, as the service's user, with the installed checkpoint key; verified.
as_user() { setpriv --reuid="$user" --regid="$group" --init-groups -- "$@"; }
as_user /usr/bin/ochered backup --database-url "sqlite://$db" --out /var/lib/ochered/package-test.backup \
  --key /etc/ochered/secrets/checkpoint.key
restored=$(mktemp -d)
chown "$user:$group" "$restored"
as_user /usr/bin/ochered restore --from /var/lib/ochered/package-test.backup \
  --database-url "sqlite://$restored/ochered.db" --public-key /etc/ochered/checkpoint.pub
as_user /usr/bin/ochered verify --database-url "sqlite://$restored/ochered.db" \
  --checkpoint "$restored/ochered.db.backup-checkpoint.json" --public-key /etc/ochered/checkpoint.pub
rm -rf "$restored"

# --- SIGTERM: in-flight requests finish, then a clean exit (stop_server checks the status);
# a restart replays the log and says so in /metrics (a fresh process: the dashboard's panel).
stop_server
start_server
curl -fsS "$base/metrics" | grep -q '^ochered_replay_events{authority="pkg-city"} 1$' \
  || fail "/metrics does not show the replay of pkg-city after a restart"
stop_server

# --- Purge: nothing of the package is left.
dpkg --purge ochered >/dev/null
left=""
for path in /usr/bin/ochered /etc/ochered /var/lib/ochered "$unit" /usr/share/doc/ochered; do
  [ -e "$path" ] && left="$left $path"
done
[ -z "$left" ] || fail "left after purge:$left"
getent passwd ochered >/dev/null && fail "the ochered user is left after purge"
getent group ochered >/dev/null && fail "the ochered group is left after purge"
dpkg-query -W -f='${Status}' ochered 2>/dev/null | grep -q 'ok installed' && fail "dpkg still lists ochered"
echo "package test: installed, served, backed up and purged cleanly"
