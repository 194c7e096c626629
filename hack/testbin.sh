#!/usr/bin/env bash
# Builds the real binaries the local control plane runs (etcd, kube-apiserver, Vault) from Go
# modules, into a cache outside the work tree keyed by name and version, once per machine.
#
#   hack/testbin.sh            build what is missing, print NAME=PATH for each binary
#
# Each binary has a recipe in hack/testbin/NN-NAME.sh (its pinned version and how to build it);
# adding a binary is adding a recipe.
#   hack/testbin.sh --print    print the cache root only
set -euo pipefail

CACHE="${ROTOR_TESTBIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rotor/testbin}"

if [[ "${1:-}" == "--print" ]]; then echo "$CACHE"; exit 0; fi
command -v go >/dev/null || { echo "testbin: 'go' is not on PATH; install Go 1.25+ first" >&2; exit 1; }
mkdir -p "$CACHE"
# One builder at a time per machine (parallel `make test` runs wait here instead of racing).
exec 9>"$CACHE/.lock"
flock 9
export GOFLAGS="-mod=mod" CGO_ENABLED=0

say() { printf '[testbin] %s\n' "$*" >&2; }

# build NAME VERSION PKG [LDFLAGS]: builds PKG from the module prepared in $src into the cache.
build() {
  local name=$1 version=$2 pkg=$3 ldflags=${4:-}
  local out="$CACHE/$name-$version/$name"
  local start=$SECONDS
  say "building $name $version from $pkg (one-time; cached at $out)"
  (cd "$src" && go mod tidy -e >/dev/null 2>"$src/tidy.log" || { cat "$src/tidy.log" >&2; exit 1; }
   go build -trimpath -ldflags "-s -w $ldflags" -o "$out.tmp" "$pkg") \
    || { say "FAILED to build $name $version (see errors above)"; return 1; }
  mv "$out.tmp" "$out"
  echo "$((SECONDS - start))" > "$CACHE/$name-$version/build-seconds"
  say "built $name $version in $((SECONDS - start))s"
}

have() { [[ -x "$CACHE/$1-$2/$1" ]]; }

prepare() { src="$CACHE/src/$1-$2"; rm -rf "$src"; mkdir -p "$src" "$CACHE/$1-$2"; }

BINARIES=()
for recipe in "$(dirname "$0")"/testbin/*.sh; do
  # shellcheck source=/dev/null
  source "$recipe"
done

for pair in "${BINARIES[@]}"; do
  set -- $pair; echo "$1=$CACHE/$1-$2/$1"
done
