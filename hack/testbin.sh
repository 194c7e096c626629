#!/usr/bin/env bash
# Builds the real binaries the local control plane runs (etcd, kube-apiserver, Vault) from Go
# modules, into a cache outside the work tree keyed by name and version, once per machine.
#
#   hack/testbin.sh            build what is missing, print the directory of each binary
#   hack/testbin.sh --print    print the cache root only
#
# OpenBao is the preferred server, but the Go module proxy answers 403 "This module version is not
# available" for github.com/openbao/openbao at every version tried, so Rotor builds HashiCorp Vault
# (same API) from github.com/hashicorp/vault instead.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.35.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.8}"
VAULT_VERSION="${VAULT_VERSION:-v1.21.4}"
CACHE="${ROTOR_TESTBIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rotor/testbin}"

if [[ "${1:-}" == "--print" ]]; then echo "$CACHE"; exit 0; fi
command -v go >/dev/null || { echo "testbin: 'go' is not on PATH; install Go 1.25+ first" >&2; exit 1; }
mkdir -p "$CACHE"
export GOFLAGS="-mod=mod" CGO_ENABLED=0

say() { printf '[testbin] %s\n' "$*" >&2; }

# build NAME VERSION PKG [LDFLAGS]: builds PKG from the module prepared in $src into the cache.
build() {
  local name=$1 version=$2 pkg=$3 ldflags=${4:-}
  local out="$CACHE/$name-$version/$name"
  local start=$SECONDS
  say "building $name $version from $pkg (one-time; cached at $out)"
  (cd "$src" && go mod tidy >/dev/null 2>"$src/tidy.log" || { cat "$src/tidy.log" >&2; exit 1; }
   go build -trimpath -ldflags "-s -w $ldflags" -o "$out.tmp" "$pkg") \
    || { say "FAILED to build $name $version (see errors above)"; return 1; }
  mv "$out.tmp" "$out"
  echo "$((SECONDS - start))" > "$CACHE/$name-$version/build-seconds"
  say "built $name $version in $((SECONDS - start))s"
}

have() { [[ -x "$CACHE/$1-$2/$1" ]]; }

prepare() { src="$CACHE/src/$1-$2"; rm -rf "$src"; mkdir -p "$src" "$CACHE/$1-$2"; }

# etcd: the server module's main package.
if ! have etcd "$ETCD_VERSION"; then
  prepare etcd "$ETCD_VERSION"
  cat > "$src/go.mod" <<MOD
module rotor.dev/testbin/etcd
go 1.24
require go.etcd.io/etcd/server/v3 $ETCD_VERSION
MOD
  printf 'package tools\nimport _ "go.etcd.io/etcd/server/v3"\n' > "$src/tools.go"
  sed -i 's/^package tools/\/\/go:build tools\n\npackage tools/' "$src/tools.go"
  build etcd "$ETCD_VERSION" go.etcd.io/etcd/server/v3
fi

# kube-apiserver: k8s.io/kubernetes pins its staging modules with local replaces, which a
# dependent module cannot use; point each at its published v0.x twin instead.
if ! have kube-apiserver "$KUBE_VERSION"; then
  prepare kube-apiserver "$KUBE_VERSION"
  upstream=$(cd "$src" && go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  staging_version="v0.${KUBE_VERSION#v1.}"
  {
    echo "module rotor.dev/testbin/kube-apiserver"
    echo "go 1.25.0"
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#replace \1 => \1 '"$staging_version"'#p' "$upstream"
  } > "$src/go.mod"
  printf '//go:build tools\n\npackage tools\nimport _ "k8s.io/kubernetes/cmd/kube-apiserver"\n' > "$src/tools.go"
  minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
  build kube-apiserver "$KUBE_VERSION" k8s.io/kubernetes/cmd/kube-apiserver \
    "-X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
fi

# vault: its go.mod replaces api/ and sdk/ with nested modules the module zip leaves out, so use
# their published versions and keep only the upstream replaces that point at other modules.
if ! have vault "$VAULT_VERSION"; then
  prepare vault "$VAULT_VERSION"
  upstream=$(cd "$src" && go mod download -json "github.com/hashicorp/vault@$VAULT_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  {
    echo "module rotor.dev/testbin/vault"
    grep -E '^go ' "$upstream"
    echo "require github.com/hashicorp/vault $VAULT_VERSION"
    grep -E '^replace ' "$upstream" | grep -v '=> \./' || true
  } > "$src/go.mod"
  printf '//go:build tools\n\npackage tools\nimport _ "github.com/hashicorp/vault"\n' > "$src/tools.go"
  build vault "$VAULT_VERSION" github.com/hashicorp/vault \
    "-X github.com/hashicorp/vault/version.Version=${VAULT_VERSION#v}"
fi

for pair in "etcd $ETCD_VERSION" "kube-apiserver $KUBE_VERSION" "vault $VAULT_VERSION"; do
  set -- $pair; echo "$1=$CACHE/$1-$2/$1"
done
