# shellcheck shell=bash
# Shared settings and helpers of the test cluster's scripts (build, up, load, down).
#
# Sourced, never run. Holds the cluster's fixed layout: the cache of built binaries and images
# (outside the repository, keyed by the wrapper modules' go.mod/go.sum and build flags), the state
# directory of one running cluster, and its address ranges. Every range lies inside
# 198.19.128.0/17, clear of 198.18.0.0/16 and 198.19.0.0/24 that other tests use.

CLUSTER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${TETHER_CLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tether-cluster}
STATE=${TETHER_CLUSTER_STATE:-/tmp/tether-cluster}

# Addresses. The node's address is the bridge's own (its pods' gateway): the API server and the
# kubelet listen there, so pods reach them and nothing listens beyond the machine.
POD_CIDR=198.19.128.0/20
SERVICE_CIDR=198.19.160.0/20
NODE_IP=198.19.128.1
API_SERVICE_IP=198.19.160.1
DNS_SERVICE_IP=198.19.160.10
BRIDGE=tethercl0
NFT_TABLE=tether_cluster
CGROUP_ROOT=tether-cluster
NODE_NAME=tether-node
API_PORT=6443

# Images built here, with fixed tags (never :latest, which means "always pull").
PAUSE_IMAGE=tether.local/pause:1
WEB_IMAGE=tether.local/web:1
COREDNS_IMAGE=tether.local/coredns:1

die() {
    echo "cluster: error: $*" >&2
    exit 1
}

warn() {
    echo "cluster: warning: $*" >&2
}

log() {
    echo "cluster: $*" >&2
}

need_root() {
    [ "$(id -u)" = 0 ] || die "must run as root (network namespaces, cgroups, mounts); try: sudo $0"
}

need_tool() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 ||
            die "'$tool' not found on PATH; hint: apt-get install $(tool_package "$tool")"
    done
}

tool_package() {
    case $1 in
        runc) echo runc ;;
        nft) echo nftables ;;
        iptables) echo iptables ;;
        conntrack) echo conntrack ;;
        busybox) echo busybox-static ;;
        openssl) echo openssl ;;
        gcc) echo gcc libc6-dev ;;
        python3) echo python3 ;;
        *) echo "$1" ;;
    esac
}

CNI_BIN_DIR=${TETHER_CLUSTER_CNI_BIN:-/usr/lib/cni}

go_bin() {
    if command -v go >/dev/null 2>&1; then
        command -v go
    elif [ -x /usr/local/go/bin/go ]; then
        echo /usr/local/go/bin/go
    else
        die "no Go toolchain on PATH (needed to build the cluster's binaries); hint: install Go >= 1.24"
    fi
}

# The components: wrapper module folder (under go/), the binaries it builds, the packages.
component_binaries() {
    case $1 in
        kubernetes) echo kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl kube-proxy ;;
        etcd) echo etcd ;;
        containerd) echo containerd containerd-shim-runc-v2 ctr ;;
        coredns) echo coredns ;;
        *) die "unknown component '$1'" ;;
    esac
}

# The version a wrapper module pins for its main module (from its go.mod's require line).
module_version() {
    local component=$1 module=$2
    awk -v m="$module" '$1 == m { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' \
        "$CLUSTER_DIR/go/$component/go.mod"
}

# Prints the `go build` flags of a component, one a line.
component_flags() {
    local v
    case $1 in
        kubernetes)
            v=$(module_version kubernetes k8s.io/kubernetes)
            local major=${v#v} minor
            minor=${major#*.}
            minor=${minor%%.*}
            major=${major%%.*}
            printf '%s\n' -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$v -X k8s.io/component-base/version.gitMajor=$major -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/component-base/version.buildDate=2026-01-01T00:00:00Z -X k8s.io/client-go/pkg/version.gitVersion=$v"
            ;;
        etcd)
            v=$(module_version etcd go.etcd.io/etcd/server/v3)
            printf '%s\n' -trimpath -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$v"
            ;;
        containerd)
            v=$(module_version containerd github.com/containerd/containerd/v2)
            printf '%s\n' -trimpath -tags no_btrfs \
                -ldflags "-s -w -X github.com/containerd/containerd/v2/version.Version=$v -X github.com/containerd/containerd/v2/version.Revision=$v"
            ;;
        coredns)
            v=$(module_version coredns github.com/coredns/coredns)
            printf '%s\n' -trimpath -ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$v"
            ;;
        *) die "unknown component '$1'" ;;
    esac
}

# Prints the Go packages (commands) a component builds, one a line.
component_packages() {
    case $1 in
        kubernetes)
            local b
            for b in $(component_binaries kubernetes); do echo "k8s.io/kubernetes/cmd/$b"; done
            ;;
        etcd) echo go.etcd.io/etcd/server/v3 ;;
        containerd)
            local b
            for b in $(component_binaries containerd); do echo "github.com/containerd/containerd/v2/cmd/$b"; done
            ;;
        coredns) echo github.com/coredns/coredns ;;
        *) die "unknown component '$1'" ;;
    esac
}

# The cache key of a component: its go.mod, go.sum, build arguments and the Go version.
component_key() {
    local dir=$CLUSTER_DIR/go/$1
    {
        cat "$dir/go.mod" "$dir/go.sum"
        component_flags "$1"
        component_packages "$1"
        "$(go_bin)" env GOVERSION 2>/dev/null || echo unknown-go
    } | sha256sum | cut -c1-16
}

component_dir() {
    echo "$CACHE/bin/$1-$(component_key "$1")"
}

component_ready() {
    local dir b
    dir=$(component_dir "$1")
    for b in $(component_binaries "$1"); do
        [ -x "$dir/$b" ] || return 1
    done
}

# Path of a built binary; dies naming the build step when it is missing.
bin() {
    local name=$1 c
    for c in kubernetes etcd containerd coredns; do
        case " $(component_binaries "$c") " in
            *" $name "*)
                local dir
                dir=$(component_dir "$c")
                [ -x "$dir/$name" ] || die "$name is not built ($dir/$name missing); hint: run $CLUSTER_DIR/build"
                echo "$dir/$name"
                return
                ;;
        esac
    done
    die "no component builds '$name'"
}

now() {
    date +%s.%N
}

# Prints "PHASE: N.Ns" since the given start time.
phase_done() {
    local phase=$1 start=$2
    awk -v s="$start" -v e="$(now)" -v p="$phase" 'BEGIN { printf "cluster: %-28s %6.1fs\n", p ":", e - s }' >&2
}
