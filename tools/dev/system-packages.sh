#!/usr/bin/env bash
# Installs the Debian packages the real test node and the image builds need, once: containerd and runc run
# the pods, the CNI plugins wire them, iptables/conntrack serve kube-proxy, buildah/mmdebstrap/umoci build
# and unpack our images without a container daemon or registry, busybox-static makes tiny test images,
# gcc and libc6-dev compile the static pause program, curl is the tests' HTTP client in the node namespace,
# docker-registry is the local registry model images are pushed to and pulled from (its init script does not
# start here: tests run `docker-registry serve CONFIG` themselves).
# Safe to run again: it only calls apt-get when a package is missing. Needs root (CI and these machines are).
set -euo pipefail
packages=(
  containerd runc containernetworking-plugins
  iptables conntrack socat ethtool iproute2 util-linux
  buildah mmdebstrap umoci busybox-static
  gcc libc6-dev curl
  docker-registry
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "system-packages.sh: missing Debian packages (${missing[*]}); run as root or: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "[system] installing ${missing[*]} (Debian packages, once)" >&2
exec 9>/var/lock/servedmodel-apt.lock
flock 9
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2 || apt-get update >&2
apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
# The containerd package starts a host-wide daemon; the test nodes run their own, so keep it out of the way.
if [ -d /run/systemd/system ]; then systemctl disable --now containerd >/dev/null 2>&1 || true; fi
