#!/usr/bin/env bash
# docs/OPERATIONS.md's container commands (section 9), run for real with podman: the image
# built from deploy/container/Containerfile, the four secrets created, the container run with
# its volume, /ready asked from the host, a backup taken with `podman exec`, the container
# stopped (SIGTERM: a clean exit), the backup restored into the volume and the server started
# again on it. It also checks that the image is minimal (no shell) and that the server runs
# as the non-root user 65532.
#
# The Containerfile's base images are public ones (docker.io/library/rust, distroless
# cc-debian12) that a machine without access to those registries cannot pull. Their names are
# build arguments with those defaults; this script makes local stand-ins once, with the same
# contents from Debian 12's own packages, and builds with them:
#   localhost/ochered-build-base:bookworm   Debian 12 (debootstrap) with gcc and the Rust
#                                           toolchain of this machine (rustc --print sysroot)
#   localhost/ochered-runtime-base:cc-debian12-nonroot
#                                           what distroless cc-debian12:nonroot is made of:
#                                           base-files, netbase, tzdata, CA certificates, libc6,
#                                           libssl3, libgcc-s1, libgomp1, libstdc++6; no shell;
#                                           user 65532 (nonroot), workdir /home/nonroot
# With OCHERED_USE_PUBLIC_BASES=1 the build uses the Containerfile's defaults instead (pulls).
#
# As root, with podman (Debian's podman 4.3 was used), debootstrap, apt-get, curl and xxd.
# The container, its volume, its secrets and the built image are removed at the end; the two
# base images are kept (rebuilding them takes minutes). Never run it where a container, volume
# or secret of these names belongs to someone: it refuses to start if one exists.
#
#   bash tests/package/container.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
cache="${OCHERED_CONTAINER_CACHE:-/var/tmp/ochered-container}"
mirror="${OCHERED_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
build_base=localhost/ochered-build-base:bookworm
runtime_base=localhost/ochered-runtime-base:cc-debian12-nonroot
secrets=(ochered_jwt_secret ochered_person_secret ochered_data_key ochered_signing_key)
started=$SECONDS

fail() { echo "container test: $*" >&2; exit 1; }
step() { printf '\n--- [%4ss] %s\n' "$((SECONDS - started))" "$*"; }
[ "$(id -u)" = 0 ] || fail "run as root"
for tool in podman curl xxd; do command -v "$tool" >/dev/null || fail "$tool is missing"; done

podman container exists ochered && fail "a container named ochered exists; remove it first"
podman volume exists ochered-data && fail "a volume named ochered-data exists; remove it first"
for s in "${secrets[@]}"; do
  podman secret inspect "$s" >/dev/null 2>&1 && fail "a secret named $s exists; remove it first"
done
podman image exists localhost/ochered:latest && fail "an image localhost/ochered exists; remove it first"

work=$(mktemp -d)
cleanup() {
  local status=$?
  if [ "$status" != 0 ] && podman container exists ochered; then
    echo "--- podman logs ochered (last 40 lines)" >&2
    podman logs --tail 40 ochered >&2 || true
  fi
  podman rm -f -t 10 ochered >/dev/null 2>&1 || true
  podman volume rm -f ochered-data >/dev/null 2>&1 || true
  for s in "${secrets[@]}"; do podman secret rm "$s" >/dev/null 2>&1 || true; done
  podman rmi -f localhost/ochered:latest >/dev/null 2>&1 || true
  podman image prune -f >/dev/null 2>&1 || true
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT

# --- The local base images (once).
if [ -z "${OCHERED_USE_PUBLIC_BASES:-}" ]; then
  if ! podman image exists "$runtime_base"; then
    step "make $runtime_base from Debian 12 packages (once)"
    rootfs="$cache/runtime-rootfs"
    rm -rf "$rootfs" "$cache/debs"
    mkdir -p "$rootfs" "$cache/debs"
    # The packages distroless cc-debian12 is made of (its base/config.bzl, cc/config.bzl).
    (cd "$cache/debs" && apt-get download -q base-files netbase tzdata ca-certificates \
      libc6 libssl3 libgcc-s1 libgomp1 libstdc++6 gcc-12-base 2>/dev/null)
    # A merged /usr, as in distroless.
    mkdir -p "$rootfs/usr/bin" "$rootfs/usr/lib" "$rootfs/usr/lib64" "$rootfs/usr/sbin"
    for d in bin lib lib64 sbin; do ln -s "usr/$d" "$rootfs/$d"; done
    for deb in "$cache/debs"/*.deb; do
      dpkg-deb --fsys-tarfile "$deb" | tar -x --keep-directory-symlink -C "$rootfs"
    done
    mkdir -p "$rootfs/etc/ssl/certs"
    cat "$rootfs"/usr/share/ca-certificates/mozilla/*.crt >"$rootfs/etc/ssl/certs/ca-certificates.crt"
    cat >"$rootfs/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
    cat >"$rootfs/etc/group" <<'GROUP'
root:x:0:
nobody:x:65534:
tty:x:5:
staff:x:50:
nonroot:x:65532:
GROUP
    printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
    install -d -m 1777 "$rootfs/tmp"
    install -d -m 0700 "$rootfs/root"
    install -d -m 0700 -o 65532 -g 65532 "$rootfs/home/nonroot"
    rm -rf "$rootfs/usr/share/doc" "$rootfs/usr/share/man" "$rootfs/usr/share/lintian"
    [ -e "$rootfs/bin/sh" ] && fail "the runtime base has a shell"
    tar --numeric-owner -C "$rootfs" -c . | podman import -q \
      --change 'USER 65532' --change 'WORKDIR /home/nonroot' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
      --message "distroless cc-debian12:nonroot's packages from Debian 12, made by tests/package/container.sh" \
      - "$runtime_base" >/dev/null
    rm -rf "$rootfs"
  fi
  if ! podman image exists "$build_base"; then
    step "make $build_base: debootstrap bookworm with gcc, and this machine's Rust (once)"
    command -v debootstrap >/dev/null || fail "debootstrap is missing"
    sysroot=$(rustc --print sysroot)
    rootfs="$cache/build-rootfs"
    rm -rf "$rootfs"
    debootstrap --variant=minbase --include=gcc,libc6-dev,ca-certificates \
      bookworm "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1 \
      || { tail -n 20 "$cache/debootstrap.log" >&2; fail "debootstrap failed"; }
    # Like the rust image: the toolchain under /usr/local, cargo's home /usr/local/cargo.
    mkdir -p "$rootfs/usr/local/rust" "$rootfs/usr/local/cargo/bin"
    cp -a "$sysroot/lib" "$rootfs/usr/local/rust/"
    mkdir -p "$rootfs/usr/local/rust/bin"
    cp -a "$sysroot"/bin/{cargo,rustc,rustdoc} "$rootfs/usr/local/rust/bin/"
    for b in cargo rustc rustdoc; do ln -s "../../rust/bin/$b" "$rootfs/usr/local/cargo/bin/$b"; done
    # Cargo in the build downloads crates from crates.io: with this machine's certificate
    # authorities (a network that reaches crates.io through a TLS proxy needs its CA; on an
    # ordinary network Debian's bundle is the same).
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
    rm -rf "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/lib/apt/lists/"*
    tar --numeric-owner -C "$rootfs" -c . | podman import -q \
      --change 'ENV CARGO_HOME=/usr/local/cargo' \
      --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --message "Debian 12 with gcc and $(rustc --version), made by tests/package/container.sh" \
      - "$build_base" >/dev/null
    rm -rf "$rootfs"
  fi
  base_args=(--build-arg "BUILD_IMAGE=$build_base" --build-arg "RUNTIME_IMAGE=$runtime_base")
  echo "bases: $(podman run --rm "$build_base" rustc --version); $runtime_base"
else
  base_args=()
fi

# --- Section 9, as written (the base images aside).
step "podman build -f deploy/container/Containerfile -t ochered . ${base_args[*]}"
podman build -f deploy/container/Containerfile -t ochered "${base_args[@]}" . 2>&1 \
  | grep -vE '^\s+(Compiling|Downloaded|Downloading) ' | tail -n 25
podman image exists localhost/ochered:latest || fail "no image"
echo "image: $(podman image inspect localhost/ochered --format '{{.Size}}') bytes," \
  "user $(podman image inspect localhost/ochered --format '{{.Config.User}}')"
[ "$(podman image inspect localhost/ochered --format '{{.Config.User}}')" = 65532:65532 ] || fail "the image does not run as 65532"
podman run --rm --entrypoint /bin/sh ochered -c true >/dev/null 2>&1 && fail "the image has a shell"

step "podman secret create (four secrets)"
head -c 32 /dev/urandom | xxd -p -c 64 | podman secret create ochered_jwt_secret -
head -c 32 /dev/urandom | xxd -p -c 64 | podman secret create ochered_person_secret -
head -c 32 /dev/urandom | xxd -p -c 64 | podman secret create ochered_data_key -
head -c 32 /dev/urandom | xxd -p -c 64 | podman secret create ochered_signing_key -

# The guide publishes port 8080; if the host's 8080 is taken, another host port (only that).
port=8080
if curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/" || ss -ltnH "sport = :$port" | grep -q .; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  echo "the host's port 8080 is taken: publishing on $port instead"
fi
step "podman run -d --name ochered -p $port:8080 -v ochered-data:/var/lib/ochered --secret ... ochered"
podman run -d --name ochered -p "$port":8080 -v ochered-data:/var/lib/ochered \
  --secret ochered_jwt_secret --secret ochered_person_secret --secret ochered_data_key \
  --secret ochered_signing_key ochered
wait_ready() {
  for _ in $(seq 1 120); do
    curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && return 0
    podman container inspect ochered --format '{{.State.Running}}' | grep -q true || break
    sleep 0.5
  done
  podman logs ochered >&2 || true
  fail "/ready never answered 200 on the host's port $port"
}
wait_ready
step "curl -s http://127.0.0.1:$port/ready (from the host)"
ready=$(curl -s "http://127.0.0.1:$port/ready")
echo "$ready"
[ "$ready" = '{"status":"ready","authorities":[],"writes":[]}' ] || fail "unexpected /ready: $ready"
pid=$(podman container inspect ochered --format '{{.State.Pid}}')
uid=$(sed -n 's/^Uid:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$pid/status")
echo "the server: host pid $pid, uid $uid, $(podman top ochered user args | tail -n 1)"
[ "$uid" = 65532 ] || fail "the server runs as uid $uid, not 65532"
podman logs ochered 2>&1 | grep -q development && fail "the server uses a development secret"

# An authority, with a token made from the same secret (through `podman exec`).
token=$(podman exec ochered ochered token --role admin --sub it-admin --jwt-secret-file /run/secrets/ochered_jwt_secret)
status=$(curl -sS -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$port/api/v1/authorities" \
  -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  -d '{"id":"novosibirsk","name":"Novosibirsk","time_zone":"Asia/Novosibirsk"}')
[ "$status" = 201 ] || fail "creating an authority answered $status"

# --- The backup, as the guide's "Back up" (in $work/backups instead of /var/backups/ochered).
step "podman exec ochered ochered backup ... (into the volume), podman cp (off it)"
backups="$work/backups"
name=ochered-$(date +%Y%m%dT%H%M%S).backup
install -d -m 0750 "$backups"
curl -s "http://127.0.0.1:$port/.well-known/ochered/public-key" > "$backups/checkpoint.pub"
podman exec ochered ochered backup --key /run/secrets/ochered_signing_key \
  --out "/var/lib/ochered/$name"
podman cp "ochered:/var/lib/ochered/$name" "$backups/"
ls -ln "$backups/"
# An authority after the backup: the restore must take the log back to before it.
status=$(curl -sS -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$port/api/v1/authorities" \
  -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  -d '{"id":"after-backup","name":"After","time_zone":"Europe/Moscow"}')
[ "$status" = 201 ] || fail "creating an authority answered $status"

step "podman stop ochered"
podman stop ochered
[ "$(podman container inspect ochered --format '{{.State.ExitCode}}')" = 0 ] \
  || fail "the server did not exit cleanly on SIGTERM (exit $(podman container inspect ochered --format '{{.State.ExitCode}}'))"

step "podman cp the backup back; restore in a one-off container on the volume; podman start ochered"
podman cp "$backups/$name" ochered:/var/lib/ochered/
podman cp "$backups/checkpoint.pub" ochered:/var/lib/ochered/
podman run --rm -v ochered-data:/var/lib/ochered ochered restore --from "/var/lib/ochered/$name" \
  --database-url sqlite:///var/lib/ochered/ochered.db --public-key /var/lib/ochered/checkpoint.pub --force
podman start ochered
wait_ready
ready=$(curl -fsS "http://127.0.0.1:$port/ready")
echo "$ready"
grep -q '"novosibirsk"' <<<"$ready" || fail "the restored log lacks novosibirsk"
grep -q '"after-backup"' <<<"$ready" && fail "the restored log has an authority made after the backup"
podman stop ochered >/dev/null
podman run --rm -v ochered-data:/var/lib/ochered ochered verify --database-url sqlite:///var/lib/ochered/ochered.db \
  --checkpoint /var/lib/ochered/ochered.db.backup-checkpoint.json --public-key /var/lib/ochered/checkpoint.pub
echo "container test: built, ran as 65532, answered /ready, backed up, stopped cleanly, restored in $((SECONDS - started)) s"
