# shellcheck shell=bash
# Sourced by hack/testbin.sh (which defines build, have, prepare).
KUBE_VERSION="${KUBE_VERSION:-v1.35.4}"
BINARIES+=("kube-apiserver $KUBE_VERSION")

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
