# shellcheck shell=bash
# Sourced by hack/testbin.sh (which defines build, have, prepare).
# helm: lints, renders and packages charts/rotor in the tests (no cluster needed for that).
HELM_VERSION="${HELM_VERSION:-v3.20.2}"
BINARIES+=("helm $HELM_VERSION")

# helm's go.mod has no local replaces, so requiring the module and building its cmd is enough. Its
# Makefile stamps the Kubernetes version it was built against (the default .Capabilities.KubeVersion,
# checked against Chart.yaml's kubeVersion); do the same from its client-go requirement.
if ! have helm "$HELM_VERSION"; then
  prepare helm "$HELM_VERSION"
  upstream=$(cd "$src" && go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  kube_minor=$(sed -n 's#^\s*k8s.io/client-go v0\.\([0-9]*\)\..*#\1#p' "$upstream")
  cat > "$src/go.mod" <<MOD
module rotor.dev/testbin/helm
go 1.25.0
require helm.sh/helm/v3 $HELM_VERSION
MOD
  printf '//go:build tools\n\npackage tools\nimport _ "helm.sh/helm/v3/cmd/helm"\n' > "$src/tools.go"
  v=helm.sh/helm/v3
  build helm "$HELM_VERSION" $v/cmd/helm \
    "-X $v/internal/version.version=$HELM_VERSION -X $v/internal/version.gitTreeState=clean -X $v/pkg/chartutil.k8sVersionMajor=1 -X $v/pkg/chartutil.k8sVersionMinor=$kube_minor -X $v/pkg/lint/rules.k8sVersionMajor=1 -X $v/pkg/lint/rules.k8sVersionMinor=$kube_minor"
fi
