#!/usr/bin/env bash
# Builds what the test cluster's real node runs beside the Debian packages (containerd, runc, CNI plugins):
# kubelet and kube-proxy from the same Kubernetes wrapper module as the control plane (kube/), CoreDNS from
# its own wrapper module (coredns/), and three small OCI image archives: the pause image (node/pause.c,
# gcc -static), CoreDNS, and a busybox test image (Debian's busybox-static). Once per set of inputs, into a
# cache folder outside the clone; prints that folder. A second run with the same inputs only checks it.
#
#   SERVEDMODEL_CACHE   cache root (default: ${XDG_CACHE_HOME:-~/.cache}/servedmodel-operator)
#
# Needs Go, gcc with a static libc, python3 and busybox-static (tools/dev/system-packages.sh installs the
# Debian ones).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
required() { awk -v m="$2" '($1 == m || ($1 == "require" && $2 == m)) { print $NF == "indirect" ? $(NF-2) : $NF; exit }' "$here/$1/go.mod"; }
KUBE_VERSION=$(required kube k8s.io/kubernetes)
COREDNS_VERSION=$(required coredns github.com/coredns/coredns)
: "${KUBE_VERSION:?cannot read the Kubernetes version from kube/go.mod}"
: "${COREDNS_VERSION:?cannot read the CoreDNS version from coredns/go.mod}"
busybox=/bin/busybox
[ -x "$busybox" ] || { echo "build-node.sh: $busybox is missing: run tools/dev/system-packages.sh" >&2; exit 1; }
command -v gcc >/dev/null || { echo "build-node.sh: gcc is missing: run tools/dev/system-packages.sh" >&2; exit 1; }

cache_root=${SERVEDMODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/servedmodel-operator}
# The key covers every input: the wrapper modules, the mains, the pause source, the image packer, this
# script, and the busybox binary and C compiler the images are made from.
inputs_hash=$( (cd "$here" && cat build-node.sh kube/go.mod kube/go.sum kube/cmd/kubelet/main.go \
  kube/cmd/kube-proxy/main.go coredns/go.mod coredns/go.sum coredns/main.go node/pause.c node/ociimage.py \
  && sha256sum "$busybox" && gcc --version | head -1) | sha256sum | cut -c1-12)
bin_dir="$cache_root/node/k8s-$KUBE_VERSION-coredns-$COREDNS_VERSION-$inputs_hash"
outputs=(kubelet kube-proxy coredns images/pause.tar images/coredns.tar images/busybox.tar images.json)

complete() {
  for f in "${outputs[@]}"; do [ -s "$bin_dir/$f" ] || return 1; done
}

if complete; then
  echo "$bin_dir"
  exit 0
fi
mkdir -p "$cache_root/node"
exec 9>"$cache_root/node/.build-$inputs_hash.lock"
if ! flock -n 9; then
  echo "[node] another build of the same inputs is running; waiting for it" >&2
  flock 9
fi
if complete; then
  echo "$bin_dir"
  exit 0
fi

command -v go >/dev/null || { echo "build-node.sh: Go is needed to build the node binaries (see README)" >&2; exit 1; }
log() { echo "[node] $*" >&2; }
staging=$(mktemp -d "$cache_root/node/.build-XXXXXX")
trap 'rm -rf "$staging"' EXIT
mkdir -p "$staging/images"

export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -mod=readonly"
minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
stamp="-X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1"
stamp="$stamp -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
stamp="$stamp -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1"
stamp="$stamp -X k8s.io/client-go/pkg/version.gitMinor=$minor"

start=$(date +%s)
log "building kubelet and kube-proxy $KUBE_VERSION (a few minutes when the control plane was built before)"
(cd "$here/kube" && go build -trimpath -ldflags "-s -w $stamp" -o "$staging/" ./cmd/kubelet ./cmd/kube-proxy)
log "kubelet and kube-proxy built in $(( $(date +%s) - start ))s"
t=$(date +%s)
log "building CoreDNS $COREDNS_VERSION (a first build takes a few minutes)"
(cd "$here/coredns" && go build -trimpath -ldflags "-s -w" -o "$staging/coredns" .)
log "CoreDNS built in $(( $(date +%s) - t ))s"

tag=$inputs_hash
gcc -static -Os -s -Wl,--build-id=none -o "$staging/pause" "$here/node/pause.c"
pack() { python3 "$here/node/ociimage.py" "$@" >/dev/null; }
pack --out "$staging/images/pause.tar" --ref "localhost/servedmodel/pause:$tag" \
  --add "$staging/pause:/pause:0755" --entrypoint '["/pause"]' --user 65535:65535
pack --out "$staging/images/coredns.tar" --ref "localhost/servedmodel/coredns:$COREDNS_VERSION-$tag" \
  --add "$staging/coredns:/coredns:0755" --entrypoint '["/coredns"]'
# The busybox test image: every applet as a symlink in /bin (sh, httpd, nc, nslookup, ...), a /tmp and a /www.
links=()
for applet in $("$busybox" --list); do
  [ "$applet" = busybox ] || links+=(--symlink "/bin/$applet:busybox")
done
pack --out "$staging/images/busybox.tar" --ref "localhost/servedmodel/busybox:$tag" \
  --add "$busybox:/bin/busybox:0755" "${links[@]}" --dir /tmp:1777 --dir /www --cmd '["/bin/sh"]'
cat > "$staging/images.json" <<EOF
{
  "pause": {"archive": "images/pause.tar", "ref": "localhost/servedmodel/pause:$tag"},
  "coredns": {"archive": "images/coredns.tar", "ref": "localhost/servedmodel/coredns:$COREDNS_VERSION-$tag"},
  "busybox": {"archive": "images/busybox.tar", "ref": "localhost/servedmodel/busybox:$tag"}
}
EOF

rm -rf "$bin_dir"
mv "$staging" "$bin_dir"
trap - EXIT
log "built in $(( $(date +%s) - start ))s into $bin_dir"
echo "$bin_dir"
