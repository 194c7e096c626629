#!/usr/bin/env bash
# Builds the peer operators hack/bench_peers.py compares Rotor with, once per machine, into a cache
# outside the work tree keyed by name and version (the hack/testbin.sh pattern). Never run in CI.
#
#   hack/peers.sh            build what is missing, print NAME=DIR for each peer that is built
#   hack/peers.sh --print    print the cache root only
#
# Each DIR holds the binary (DIR/NAME) and the operator's CRDs (DIR/crds/*.yaml).
#   eso: External Secrets Operator, from its Go module (v0.16.2 is the newest release that builds as a
#        dependent module; its one non-local `replace` is copied below).
#   vso: Vault Secrets Operator. The Go module proxy refuses its module, so it builds from a source
#        checkout: VSO_SOURCE=<a checkout, or a bare git dir that has tag $VSO_VERSION>; its
#        dependencies come from the module proxy. Without VSO_SOURCE it is skipped, saying so.
set -euo pipefail

CACHE="${ROTOR_PEERS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rotor/peers}"
ESO_VERSION="${ESO_VERSION:-v0.16.2}"
VSO_VERSION="${VSO_VERSION:-v1.4.1}"

if [[ "${1:-}" == "--print" ]]; then echo "$CACHE"; exit 0; fi
if [[ -n "${CI:-}" ]]; then echo "peers: not built in CI (one-time, slow; run on a developer machine)" >&2; exit 1; fi
command -v go >/dev/null || { echo "peers: 'go' is not on PATH; install Go 1.26+ first" >&2; exit 1; }
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9
export GOFLAGS="-mod=mod" CGO_ENABLED=0

say() { printf '[peers] %s\n' "$*" >&2; }
have() { [[ -x "$CACHE/$1-$2/$1" && -d "$CACHE/$1-$2/crds" ]]; }

# build NAME VERSION DIR PKG [LDFLAGS]: builds PKG inside the module at DIR into the cache.
build() {
  local name=$1 version=$2 dir=$3 pkg=$4 ldflags=${5:-}
  local out="$CACHE/$name-$version/$name" start=$SECONDS
  mkdir -p "$CACHE/$name-$version"
  say "building $name $version (one-time; cached at $out)"
  (cd "$dir" && go build -trimpath -ldflags "-s -w $ldflags" -o "$out.tmp" "$pkg") \
    || { say "FAILED to build $name $version (see errors above)"; return 1; }
  mv "$out.tmp" "$out"
  echo "$((SECONDS - start))" > "$CACHE/$name-$version/build-seconds"
  say "built $name $version in $((SECONDS - start))s"
}

# crds NAME VERSION DIR...: copies the CRD YAML files of the given directories next to the binary.
crds() {
  local name=$1 version=$2; shift 2
  local out="$CACHE/$name-$version/crds"
  rm -rf "$out.tmp"; mkdir -p "$out.tmp"
  for d in "$@"; do cp "$d"/*.yaml "$out.tmp"/; done
  rm -f "$out.tmp/kustomization.yaml"
  rm -rf "$out"; mv "$out.tmp" "$out"
}

# --- External Secrets Operator, from its module ------------------------------------------------
if ! have eso "$ESO_VERSION"; then
  src="$CACHE/src/eso-$ESO_VERSION"; rm -rf "$src"; mkdir -p "$src"
  mod=$(cd "$src" && go mod download -json "github.com/external-secrets/external-secrets@$ESO_VERSION")
  upstream=$(sed -n 's/.*"GoMod": "\(.*\)".*/\1/p' <<<"$mod")
  moddir=$(sed -n 's/.*"Dir": "\(.*\)".*/\1/p' <<<"$mod")
  {
    echo "module rotor.dev/peers/eso"
    grep -E '^go ' "$upstream"
    echo "require github.com/external-secrets/external-secrets $ESO_VERSION"
    grep -E '^replace ' "$upstream" | grep -v '=> \./' || true
  } > "$src/go.mod"
  # Its main package is the module root; a dependent module builds it by import path.
  printf '//go:build tools\n\npackage tools\nimport _ "github.com/external-secrets/external-secrets"\n' > "$src/tools.go"
  (cd "$src" && go mod tidy -e >/dev/null 2>"$src/tidy.log") || { cat "$src/tidy.log" >&2; exit 1; }
  build eso "$ESO_VERSION" "$src" github.com/external-secrets/external-secrets
  crds eso "$ESO_VERSION" "$moddir/config/crds/bases"
fi
echo "eso=$CACHE/eso-$ESO_VERSION"

# --- Vault Secrets Operator, from a source checkout -------------------------------------------
if ! have vso "$VSO_VERSION"; then
  if [[ -z "${VSO_SOURCE:-}" ]]; then
    say "vso $VSO_VERSION not built: set VSO_SOURCE to a checkout (or bare git dir) of hashicorp/vault-secrets-operator"
    exit 0
  fi
  src="$CACHE/src/vso-$VSO_VERSION"; rm -rf "$src"; mkdir -p "$src"
  if git --git-dir="$VSO_SOURCE" rev-parse -q --verify "refs/tags/$VSO_VERSION" >/dev/null 2>&1; then
    git --git-dir="$VSO_SOURCE" archive "$VSO_VERSION" | tar -x -C "$src"
  elif [[ -f "$VSO_SOURCE/go.mod" ]]; then
    cp -a "$VSO_SOURCE"/. "$src"/
  else
    say "VSO_SOURCE=$VSO_SOURCE is neither a checkout nor a git dir with tag $VSO_VERSION"; exit 1
  fi
  grep -q '^module github.com/hashicorp/vault-secrets-operator$' "$src/go.mod" \
    || { say "VSO_SOURCE is not hashicorp/vault-secrets-operator"; exit 1; }
  build vso "$VSO_VERSION" "$src" . \
    "-X github.com/hashicorp/vault-secrets-operator/internal/version.GitVersion=$VSO_VERSION"
  crds vso "$VSO_VERSION" "$src/config/crd/bases"
fi
echo "vso=$CACHE/vso-$VSO_VERSION"
