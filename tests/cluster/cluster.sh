#!/usr/bin/env bash
# The local single-node Kubernetes: `cluster.sh up | down | status`.
#
# up      builds what is missing (cached under $SANDLOT_CACHE), starts what is not
#         running, waits for the node to be Ready, and writes .cluster/kubeconfig
#         and .cluster/bin/kubectl into the repository. A second `up` is a no-op.
# down    stops every process of the cluster and undoes its mounts and devices.
# status  says what runs.
# restart kube-apiserver [SECONDS]  kills the API server, keeps it down SECONDS
#         (default 0), starts it with the same flags and waits for /readyz: a
#         fault the suite in tests/faults/ injects. Other components keep running.
# import-app WHEEL  builds the example application's image with WHEEL
#         (images/app.sh), imports it into the running cluster, prints its name.
# standins up|down  puts the stand-in addresses on the node (on lo), or removes
#         them: 169.254.169.254, where a server stands in for a cloud's metadata
#         service, and 198.51.100.7 (TEST-NET-2), for a public server; for the
#         network attack tests, which start the servers themselves.
# >>> scale cluster
# scale up [NODES]  adds the scale cluster to the running one: NODES (default
#         50) fake nodes that KWOK's controller simulates (built from Go
#         modules, kwok/), and the RuntimeClass `kwok`, whose pods land only
#         there and run no process. Idempotent; NODES sets the count. See the
#         README, "Scale cluster".
# scale down  removes it: stops kwok, deletes the pods on fake nodes, the
#         nodes and the RuntimeClass. `status` says whether it is up.
# <<< scale cluster
#
# There is one cluster per machine: its state lives in $SANDLOT_CLUSTER_STATE
# (default /var/lib/sandlot-cluster), so a fresh clone finds a cluster that an
# earlier clone started. A cluster found half-running (processes killed without
# `down`) is cleaned up and started afresh; a fresh start begins with an empty
# etcd, while certificates and imported images are kept.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${SANDLOT_CACHE:-$HOME/.cache/sandlot}
state=${SANDLOT_CLUSTER_STATE:-/var/lib/sandlot-cluster}
k8s_version=v1.34.4
kube_router_version=v2.1.0 # the NetworkPolicy engine; the only version the Go module proxy serves
containerd_version=v2.3.7 # the LTS line (supported until April 2028); see RUNTIME-UPGRADE.md
runc_version=v1.5.3
# gVisor tags no module versions; this is what `go list -m gvisor.dev/gvisor@latest`
# resolves to (its Go-buildable `go` branch). See RUNTIME-UPGRADE.md, section 3.
gvisor_version=v0.0.0-20260905035102-160fafc42237
node_name=sandlot-node
node_ip=172.30.255.1 # on lo: the address pods and the apiserver use for the node
pod_cidr=10.244.0.0/24
service_cidr=10.96.0.0/16
api_service_ip=10.96.0.1
bridge=sandlot0
standin_ips=(169.254.169.254 198.51.100.7) # see `standins`

pki=$state/pki
run=$state/run # per start: pids, sockets, runtime state
logs=$state/logs
bin=$state/bin
containerd_sock=$run/containerd/containerd.sock
components=(containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kube-router)

say() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { printf '[cluster] error: %s\n' "$*" >&2; exit 1; }
kubectl() { "$bin/kubectl" --kubeconfig "$pki/admin.kubeconfig" "$@"; }
# (containerd 2 warns on every call that cgroup v1 is deprecated; that is known here.)
ctr() { CONTAINERD_SUPPRESS_DEPRECATION_WARNINGS=1 "$bin/ctr" --address "$containerd_sock" "$@"; }

# --- build -----------------------------------------------------------------

install_packages() {
  local missing=()
  # containerd and runc are built from Go modules (below); runc links libseccomp.
  [ -f /usr/include/seccomp.h ] || missing+=(libseccomp-dev)
  command -v pkg-config >/dev/null || missing+=(pkg-config)
  [ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
  command -v iptables >/dev/null || missing+=(iptables)
  command -v ipset >/dev/null || missing+=(ipset)
  command -v conntrack >/dev/null || missing+=(conntrack)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  [ -x /bin/busybox ] || missing+=(busybox-static)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v gcc >/dev/null || missing+=(gcc libc6-dev)
  command -v go >/dev/null || missing+=(golang-go)
  [ ${#missing[@]} -eq 0 ] && return
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# (Every component build dies on failure itself: errexit is off in the command
# substitutions the build functions run in, and a failed build must not be cached.)

# Prints the path of the sandlot-kube binary, building it when its inputs changed.
kube_binary() {
  local key out
  key=$(cat "$here/kube/go.mod" "$here/kube/go.sum" "$here/kube/main.go" | sha256sum | cut -c1-12)
  out=$cache/kube-$k8s_version-$key/sandlot-kube
  if [ ! -x "$out" ]; then
    say "building Kubernetes $k8s_version and etcd from Go modules (first time: 15-30 minutes on 2 cores)" >&2
    local v=k8s.io/component-base/version
    mkdir -p "$(dirname "$out")"
    (cd "$here/kube" && go build -o "$out.partial" -ldflags "-s -w \
      -X $v.gitVersion=$k8s_version -X $v.gitMajor=1 -X $v.gitMinor=34 -X $v.gitTreeState=clean \
      -X k8s.io/client-go/pkg/version.gitVersion=$k8s_version" .) >&2 || die "building Kubernetes failed"
    mv "$out.partial" "$out"
  fi
  echo "$out"
}

# Prints the path of the sandlot-kube-router binary (kube-router's network
# policy controller, kube-router/), building it when its inputs changed. It is
# built with a patched Go toolchain, which the Go module proxy serves.
kube_router_binary() {
  local key out
  key=$(cat "$here/kube-router/go.mod" "$here/kube-router/go.sum" "$here/kube-router/main.go" | sha256sum | cut -c1-12)
  out=$cache/kube-router-$kube_router_version-$key/sandlot-kube-router
  if [ ! -x "$out" ]; then
    say "building kube-router $kube_router_version's network policy controller from Go modules (first time: about 3 minutes on 2 cores)" >&2
    mkdir -p "$(dirname "$out")"
    (cd "$here/kube-router" && GOTOOLCHAIN=go1.26.10 go build -o "$out.partial" -ldflags "-s -w \
      -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$kube_router_version" .) >&2 ||
      die "building kube-router failed"
    mv "$out.partial" "$out"
  fi
  echo "$out"
}

# Checks that a wrapper module pins the version this script names.
pinned() { # DIR MODULE VERSION
  grep -qE "^\s*$2 $3( |\$)" "$here/$1/go.mod" || die "tests/cluster/$1/go.mod does not pin $2 $3"
}

# Prints the path of runc, building it when its module changed. cgo, for
# libseccomp (Debian's libseccomp-dev); without libpathrs, which Debian lacks
# (runc then uses its Go implementation of the same path checks).
runc_binary() {
  local key out
  pinned runc github.com/opencontainers/runc "$runc_version"
  key=$(cat "$here/runc/go.mod" "$here/runc/go.sum" | sha256sum | cut -c1-12)
  out=$cache/runc-$runc_version-$key/runc
  if [ ! -x "$out" ]; then
    say "building runc $runc_version from Go modules (first time: about 30 seconds)" >&2
    mkdir -p "$(dirname "$out")"
    (cd "$here/runc" && CGO_ENABLED=1 GOTOOLCHAIN=go1.26.10 go build -trimpath -buildmode=pie \
      -tags "seccomp urfave_cli_no_docs" -ldflags "-s -w -X main.gitCommit=$runc_version" \
      -o "$out.partial" github.com/opencontainers/runc) >&2 || die "building runc failed"
    mv "$out.partial" "$out"
  fi
  echo "$out"
}

# Prints the directory holding containerd, its runc shim and ctr, building them
# when their module changed. No btrfs, devmapper or zfs snapshotters (btrfs
# would need its C headers); the shim static, as containerd's Makefile builds it.
containerd_dir() {
  local key out p=github.com/containerd/containerd/v2 ldflags
  pinned containerd $p "$containerd_version"
  key=$(cat "$here/containerd/go.mod" "$here/containerd/go.sum" | sha256sum | cut -c1-12)
  out=$cache/containerd-$containerd_version-$key
  ldflags="-s -w -X $p/version.Version=$containerd_version -X $p/version.Revision=$containerd_version -X $p/version.Package=$p"
  if [ ! -x "$out/containerd" ]; then
    say "building containerd $containerd_version from Go modules (first time: about 2-3 minutes on 2 cores)" >&2
    rm -rf "$out.partial"
    mkdir -p "$out.partial"
    (cd "$here/containerd" && export GOTOOLCHAIN=go1.26.10 &&
      CGO_ENABLED=1 go build -trimpath -tags "urfave_cli_no_docs no_btrfs no_devmapper no_zfs" \
        -ldflags "$ldflags" -o "$out.partial/" $p/cmd/containerd $p/cmd/ctr &&
      CGO_ENABLED=0 go build -trimpath -tags "urfave_cli_no_docs no_grpc" \
        -ldflags "$ldflags" -o "$out.partial/" $p/cmd/containerd-shim-runc-v2) >&2 ||
      die "building containerd failed"
    rm -rf "$out"
    mv "$out.partial" "$out"
  fi
  echo "$out"
}

# gVisor's shim sets its own oom_score_adj to -999 and gives up when it may not
# (root here lacks CAP_SYS_RESOURCE; see restrict_oom_score_adj below), so the
# shim is built with a permission error there tolerated: this edit of
# pkg/shim/v1/manager.go, part of the build's cache key.
gvisor_shim_patch='s/^\(\s*if err := sys\.SetOOMScore(cmd\.Process\.Pid, oomScoreMax); err != nil\) {$/\1 \&\& !os.IsPermission(err) {/'

# Applies that edit to the vendored copy of gVisor in DIR (go build -overlay
# refuses files in the module cache). Fails unless the file then holds exactly
# one patched SetOOMScore line and no unpatched one, so a newer gVisor cannot
# skip the patch unnoticed.
patch_gvisor_shim() { # DIR
  local f=$1/vendor/gvisor.dev/gvisor/pkg/shim/v1/manager.go
  [ -f "$f" ] || die "gVisor's shim: $f is missing"
  sed -i "$gvisor_shim_patch" "$f"
  if [ "$(grep -c 'sys\.SetOOMScore(.*); err != nil && !os\.IsPermission(err) {$' "$f")" != 1 ] ||
    grep -q 'sys\.SetOOMScore(.*); err != nil {$' "$f"; then
    die "gVisor's shim: the SetOOMScore line of $f is not as the patch in cluster.sh expects; look at it again"
  fi
}

# Prints the directory holding gVisor's runsc and its containerd shim
# (containerd-shim-runsc-v1), building them when their module or the shim's patch
# changed. Static (cgo off). The shim is built from a vendored, patched copy of
# the module in a temporary directory.
gvisor_dir() {
  local key out tmp
  pinned gvisor gvisor.dev/gvisor "$gvisor_version"
  key=$(cat "$here/gvisor/go.mod" "$here/gvisor/go.sum" - <<<"$gvisor_shim_patch" | sha256sum | cut -c1-12)
  out=$cache/gvisor-$gvisor_version-$key
  if [ ! -x "$out/runsc" ] || [ ! -x "$out/containerd-shim-runsc-v1" ]; then
    say "building gVisor (runsc and its containerd shim) from Go modules (first time: about 2-3 minutes on 2 cores)" >&2
    rm -rf "$out.partial"
    mkdir -p "$out.partial"
    tmp=$(mktemp -d)
    cp "$here/gvisor/go.mod" "$here/gvisor/go.sum" "$tmp/"
    # (errexit is off in a command substitution, hence the explicit checks.)
    (cd "$here/gvisor" && CGO_ENABLED=0 GOTOOLCHAIN=go1.26.10 go build -trimpath -ldflags "-s -w" \
      -o "$out.partial/runsc" gvisor.dev/gvisor/runsc) >&2 || { rm -rf "$tmp"; die "building runsc failed"; }
    (cd "$tmp" && GOTOOLCHAIN=go1.26.10 go mod vendor) >&2 || { rm -rf "$tmp"; die "go mod vendor of gVisor failed"; }
    (patch_gvisor_shim "$tmp") || { rm -rf "$tmp"; exit 1; }
    (cd "$tmp" && CGO_ENABLED=0 GOTOOLCHAIN=go1.26.10 go build -mod=vendor -trimpath -ldflags "-s -w" \
      -o "$out.partial/containerd-shim-runsc-v1" gvisor.dev/gvisor/shim) >&2 ||
      { rm -rf "$tmp"; die "building gVisor's containerd shim failed"; }
    rm -rf "$tmp" "$out"
    mv "$out.partial" "$out"
  fi
  echo "$out"
}

link_binaries() {
  local kube kube_router runc containerd gvisor name
  kube=$(kube_binary)
  kube_router=$(kube_router_binary)
  runc=$(runc_binary)
  containerd=$(containerd_dir)
  gvisor=$(gvisor_dir)
  mkdir -p "$bin"
  for name in containerd containerd-shim-runc-v2 ctr; do
    ln -sfn "$containerd/$name" "$bin/$name"
  done
  ln -sfn "$runc" "$bin/runc"
  for name in runsc containerd-shim-runsc-v1; do
    ln -sfn "$gvisor/$name" "$bin/$name"
  done
  for name in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
    ln -sfn "$kube" "$bin/$name"
  done
  ln -sfn "$kube_router" "$bin/kube-router"
}

# --- certificates and kubeconfigs --------------------------------------------

# cert NAME SUBJECT [SAN] [serving]: an EC key and a cert signed by the cluster CA.
cert() {
  local name=$1 subject=$2 san=${3:-} usage=clientAuth
  [ -f "$pki/$name.crt" ] && return
  [ -n "$san" ] && usage=serverAuth,clientAuth
  openssl ecparam -name prime256v1 -genkey -noout -out "$pki/$name.key" 2>/dev/null
  local ext
  ext=$(mktemp)
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$usage"
    [ -n "$san" ] && echo "subjectAltName=$san"
  } >"$ext"
  openssl req -new -key "$pki/$name.key" -subj "$subject" 2>/dev/null |
    openssl x509 -req -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
      -days 3650 -extfile "$ext" -out "$pki/$name.crt" 2>/dev/null
  rm -f "$ext"
}

kubeconfig() { # NAME SERVER: a kubeconfig authenticating with NAME's client cert
  local name=$1 server=$2
  cat >"$pki/$name.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: sandlot-local
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 <"$pki/ca.crt")
users:
- name: $name
  user:
    client-certificate-data: $(base64 -w0 <"$pki/$name.crt")
    client-key-data: $(base64 -w0 <"$pki/$name.key")
contexts:
- name: sandlot-local
  context: {cluster: sandlot-local, user: $name}
current-context: sandlot-local
EOF
  chmod 600 "$pki/$name.kubeconfig"
}

make_pki() {
  mkdir -p "$pki"
  chmod 700 "$pki"
  if [ ! -f "$pki/ca.crt" ]; then
    say "making certificates"
    openssl ecparam -name prime256v1 -genkey -noout -out "$pki/ca.key" 2>/dev/null
    openssl req -x509 -new -key "$pki/ca.key" -subj "/CN=sandlot-local-ca" -days 3650 \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
      -out "$pki/ca.crt" 2>/dev/null
  fi
  [ -f "$pki/sa.key" ] || {
    openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
    openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  }
  cert apiserver "/CN=kube-apiserver" \
    "IP:127.0.0.1,IP:$node_ip,IP:$api_service_ip,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
  cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
  cert admin "/O=system:masters/CN=sandlot-admin"
  cert controller-manager "/CN=system:kube-controller-manager"
  cert scheduler "/CN=system:kube-scheduler"
  cert kube-proxy "/CN=system:kube-proxy"
  cert kube-router "/CN=system:kube-router"
  cert kubelet "/O=system:nodes/CN=system:node:$node_name"
  cert kubelet-serving "/CN=$node_name" "IP:$node_ip,DNS:$node_name"
  local server=https://127.0.0.1:6443 name
  for name in admin controller-manager scheduler kube-proxy kube-router kubelet; do
    [ -f "$pki/$name.kubeconfig" ] || kubeconfig "$name" "$server"
  done
}

# --- configuration -----------------------------------------------------------

write_configs() {
  mkdir -p "$state/config" "$state/cni/net.d"
  # containerd 2.3's configuration format (version 4: the server's addresses are
  # plugin settings; CRI is split into its images and runtime plugins; unknown
  # keys are refused). Every path is ours, as containerd's defaults
  # (/run/containerd/containerd.sock.ttrpc, NRI's /var/run/nri/nri.sock) are
  # machine-wide. NRI (on by default since 2.0) stays off: nothing here uses it.
  cat >"$state/config/containerd.toml" <<EOF
version = 4
root = "$state/containerd"
state = "$run/containerd"
temp = "$run/containerd-tmp"
imports = []
[plugins.'io.containerd.server.v1.grpc']
  address = "$containerd_sock"
[plugins.'io.containerd.server.v1.ttrpc']
  address = "$containerd_sock.ttrpc"
[plugins.'io.containerd.nri.v1.nri']
  disable = true
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "registry.k8s.io/pause:3.10.1"
[plugins.'io.containerd.cri.v1.runtime']
  # This machine withholds CAP_SYS_RESOURCE even from root, so the negative
  # oom_score_adj the kubelet asks for (pause, Guaranteed pods) cannot be set;
  # containerd clamps it to its own instead.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      # Absolute, so that Debian's containerd 1.6 shim and runc 1.1, if
      # installed, are never found on PATH instead.
      runtime_path = "$bin/containerd-shim-runc-v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "$bin/runc"
        SystemdCgroup = false
        Root = "$run/runc"
    # gVisor, for pods of RuntimeClass gvisor. Its options are runsc.toml's.
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runsc]
      runtime_type = "io.containerd.runsc.v1"
      runtime_path = "$bin/containerd-shim-runsc-v1"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runsc.options]
        TypeUrl = "io.containerd.runsc.v1.options"
        ConfigPath = "$state/config/runsc.toml"
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "$state/cni/net.d"
EOF
  # runsc's state under ours: its default, /run/containerd/runsc, is
  # machine-wide, and runsc leaves mounts there (teardown undoes them).
  cat >"$state/config/runsc.toml" <<EOF
binary_name = "$bin/runsc"
root = "$run/runsc"
[runsc_config]
  platform = "systrap"
EOF
  # No masquerading and (below) no forwarding out of the bridge: pods reach each
  # other and the node, never the network beyond this machine.
  cat >"$state/cni/net.d/10-sandlot.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "sandlot",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$bridge",
      "isGateway": true,
      "isDefaultGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$pod_cidr"}]],
        "dataDir": "$run/cni-ipam"
      }
    }
  ]
}
EOF
  cat >"$state/config/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$containerd_sock
address: $node_ip
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $pki/kubelet-serving.crt
tlsPrivateKeyFile: $pki/kubelet-serving.key
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
maxPods: 250
podPidsLimit: 4096
serializeImagePulls: false
# Images here cannot be pulled again, so the kubelet never collects them, and
# eviction waits until the disk is really full.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
EOF
  # Requests in the benchmark namespace are audited, so `make bench` can count
  # what each client sends at the API server rather than trust the client.
  cat >"$state/config/audit-policy.yaml" <<EOF
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    namespaces: ["sandlot-bench"]
  - level: None
EOF
  cat >"$state/config/storageclass.yaml" <<EOF
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: standard
  annotations:
    storageclass.kubernetes.io/is-default-class: "true"
  labels:
    app.kubernetes.io/managed-by: sandlot-local-cluster
provisioner: kubernetes.io/host-path
reclaimPolicy: Delete
volumeBindingMode: Immediate
EOF
  # Pods with runtimeClassName: gvisor run in gVisor's runsc (containerd's
  # runsc handler above).
  cat >"$state/config/runtimeclass.yaml" <<EOF
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata:
  name: gvisor
  labels:
    app.kubernetes.io/managed-by: sandlot-local-cluster
handler: runsc
EOF
  # What kube-router's informers read: it lists services, endpoints and nodes
  # even though only its policy controller runs.
  cat >"$state/config/kube-router-rbac.yaml" <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: sandlot:kube-router
  labels:
    app.kubernetes.io/managed-by: sandlot-local-cluster
rules:
  - apiGroups: [""]
    resources: [pods, namespaces, nodes, services, endpoints]
    verbs: [get, list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [get, list, watch]
  - apiGroups: [networking.k8s.io]
    resources: [networkpolicies]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: sandlot:kube-router
  labels:
    app.kubernetes.io/managed-by: sandlot-local-cluster
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: sandlot:kube-router
subjects:
  - apiGroup: rbac.authorization.k8s.io
    kind: User
    name: system:kube-router
EOF
}

# --- processes ---------------------------------------------------------------

pid_of() { # NAME: the pid from NAME's pid file if that process still runs NAME
  local f=$run/$1.pid pid
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  [ -d "/proc/$pid" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -F -- "$1" >/dev/null || return 1
  echo "$pid"
}

start() { # NAME ARGS...: run in the background, logging to $logs/NAME.log
  local name=$1
  shift
  setsid "$@" >>"$logs/$name.log" 2>&1 </dev/null &
  echo $! >"$run/$name.pid"
}

wait_for() { # WHAT SECONDS COMMAND...: poll until COMMAND succeeds
  local what=$1 seconds=$2 i
  shift 2
  for ((i = 0; i < seconds * 4; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.25
  done
  die "$what did not come up within ${seconds}s; see $logs/"
}

# Identifies how the cluster is set up: a running cluster started by another
# version of this script is restarted. The scale cluster's parts of this script
# are left out (its blocks between the marker lines ">>> scale cluster" and
# "<<< scale cluster", and single lines tagged so at their end): it is added to
# and removed from a running cluster on its own, so changing it restarts nothing.
setup_key() {
  sed -e '/^ *# >>> scale cluster$/,/^ *# <<< scale cluster$/d' -e '/ # scale cluster$/d' "$here/cluster.sh" |
    cat - "$here/kube/go.sum" "$here/kube-router/go.sum" "$here/kube-router/main.go" \
      "$here/runc/go.sum" "$here/containerd/go.sum" "$here/gvisor/go.sum" |
    sha256sum | cut -c1-16
}

healthy() {
  [ "$(cat "$run/setup-key" 2>/dev/null)" = "$(setup_key)" ] || return 1
  local name
  for name in "${components[@]}"; do pid_of "$name" >/dev/null || return 1; done
  [ "$(kubectl get node "$node_name" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" = True ]
}

# Stops every process of the cluster (by pid file, then by what it runs, since pid
# files can be lost) and undoes mounts, namespaces, cgroups and devices.
teardown() {
  local name pid
  scale_stop_kwok # scale cluster
  for name in "${components[@]}"; do
    pid=$(pid_of "$name") && kill "$pid" 2>/dev/null || true
  done
  pkill -f "^$bin/" 2>/dev/null || true
  pkill -f "containerd.*$state/config/containerd.toml" 2>/dev/null || true
  sleep 1
  pkill -9 -f "^$bin/" 2>/dev/null || true
  pkill -9 -f "containerd.*$state/config/containerd.toml" 2>/dev/null || true
  pkill -9 -f "containerd-shim.*-address $containerd_sock" 2>/dev/null || true
  # Workloads of pods: every process under the kubepods cgroups.
  local procs
  for procs in $(find /sys/fs/cgroup/*/kubepods -name cgroup.procs 2>/dev/null); do
    xargs -r kill -9 <"$procs" 2>/dev/null || true
  done
  sleep 0.5
  find /sys/fs/cgroup/*/kubepods -depth -type d -exec rmdir {} \; 2>/dev/null || true
  # Mounts under our state (runsc's under $run/runsc included) and the pods'
  # network namespaces, deepest first.
  awk -v s="$state" '$2 ~ "^"s"/" || $2 ~ "^/run/netns/cni-" || $2 ~ "^/run/containerd/io.containerd" {print $2}' /proc/mounts |
    sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -f /run/netns/cni-* 2>/dev/null || true
  ip link del "$bridge" 2>/dev/null || true
  iptables -t mangle -D FORWARD -s "$pod_cidr" ! -o "$bridge" -j DROP 2>/dev/null || true
  iptables -D FORWARD -s "$pod_cidr" ! -o "$bridge" -j DROP 2>/dev/null || true # where it was before kube-router
  remove_network_policy_rules
  if awk -v s="$state" '$2 ~ "^"s"/" {found=1} END {exit !found}' /proc/mounts; then
    die "mounts under $state remain after unmounting; not deleting state"
  fi
  rm -rf "$run" "$state/etcd" "$state/kubelet"
  # containerd starts from an empty root when its version changed (the move
  # from 1.6 included), rather than trust a migration of the old one's
  # metadata; the images are imported again from their cached archives.
  if [ "$(cat "$state/containerd-version" 2>/dev/null)" != "$containerd_version" ]; then
    rm -rf "$state/containerd"
    mkdir -p "$state"
    echo "$containerd_version" >"$state/containerd-version"
  fi
}

# Removes what kube-router's policy controller leaves in the kernel when it is
# killed (v2.1.0's own --cleanup-config removes none of it): the jumps from the
# built-in chains, its chains, then the ipsets those chains referred to.
remove_network_policy_rules() {
  local saved chains
  saved=$(iptables-save -t filter 2>/dev/null) || return 0
  chains=$(grep -oE '^:KUBE-(ROUTER-(INPUT|FORWARD|OUTPUT)|NWPLCY-[A-Z0-9]+|POD-FW-[A-Z0-9]+) ' <<<"$saved" | tr -d ': ' || true)
  if [ -n "$chains" ]; then
    {
      echo '*filter'
      grep -E '^-A (INPUT|FORWARD|OUTPUT) .*-j KUBE-ROUTER-(INPUT|FORWARD|OUTPUT)$' <<<"$saved" | sed 's/^-A /-D /' || true
      printf -- '-F %s\n' $chains
      printf -- '-X %s\n' $chains
      echo COMMIT
    } | iptables-restore --noflush
  fi
  command -v ipset >/dev/null || return 0
  local sets
  sets=$(ipset list -n | grep -E '^KUBE-(SRC|DST)-' || true)
  [ -z "$sets" ] || xargs -n1 ipset destroy <<<"$sets"
}

# Starts kube-apiserver and waits until it is ready; the one place its flags live,
# so a restart runs it exactly as `up` did.
start_apiserver() {
  start kube-apiserver "$bin/kube-apiserver" \
    --etcd-servers http://127.0.0.1:2379 --advertise-address "$node_ip" --secure-port 6443 \
    --service-cluster-ip-range "$service_cidr" --client-ca-file "$pki/ca.crt" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
    --kubelet-certificate-authority "$pki/ca.crt" --kubelet-preferred-address-types InternalIP \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
    --audit-policy-file "$state/config/audit-policy.yaml" --audit-log-path "$logs/audit.log" \
    --audit-log-maxsize 200 --audit-log-maxbackup 1 \
    --profiling=false
  wait_for kube-apiserver 90 kubectl get --raw /readyz
}

start_cluster() {
  mkdir -p "$run" "$logs" "$state/kubelet"
  setup_key >"$run/setup-key"
  # The node's address, pod networking and the kernel settings kube-proxy needs.
  # grep reads all of ip's output: with -q it could exit first and pipefail would see SIGPIPE.
  ip -4 addr show dev lo | grep -F "inet $node_ip/" >/dev/null || ip addr add "$node_ip/32" dev lo
  sysctl -qw net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1
  # In mangle, which packets pass before filter: kube-router's FORWARD chain
  # ACCEPTs what network policies allow, ahead of any rule of ours in filter.
  iptables -t mangle -C FORWARD -s "$pod_cidr" ! -o "$bridge" -j DROP 2>/dev/null ||
    iptables -t mangle -I FORWARD -s "$pod_cidr" ! -o "$bridge" -j DROP
  local name
  for name in "${components[@]}"; do : >"$logs/$name.log"; done

  say "starting containerd and etcd"
  start containerd "$bin/containerd" --config "$state/config/containerd.toml"
  start etcd "$bin/etcd" --name sandlot --data-dir "$state/etcd" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster sandlot=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381 \
    --quota-backend-bytes 2147483648 --snapshot-count 10000
  wait_for containerd 30 ctr version
  import_images
  wait_for etcd 30 curl -fsS http://127.0.0.1:2381/health

  say "starting kube-apiserver"
  start_apiserver

  say "starting controller-manager, scheduler, kubelet, kube-proxy"
  start kube-controller-manager "$bin/kube-controller-manager" \
    --kubeconfig "$pki/controller-manager.kubeconfig" --bind-address 127.0.0.1 --leader-elect=false \
    --use-service-account-credentials --service-account-private-key-file "$pki/sa.key" \
    --root-ca-file "$pki/ca.crt" --cluster-signing-cert-file "$pki/ca.crt" \
    --cluster-signing-key-file "$pki/ca.key" --enable-hostpath-provisioner --profiling=false
  start kube-scheduler "$bin/kube-scheduler" \
    --kubeconfig "$pki/scheduler.kubeconfig" --bind-address 127.0.0.1 --leader-elect=false --profiling=false
  start kubelet "$bin/kubelet" --config "$state/config/kubelet.yaml" \
    --kubeconfig "$pki/kubelet.kubeconfig" --root-dir "$state/kubelet" \
    --hostname-override "$node_name" --node-ip "$node_ip"
  start kube-proxy "$bin/kube-proxy" --kubeconfig "$pki/kube-proxy.kubeconfig" \
    --hostname-override "$node_name" --cluster-cidr "$pod_cidr" --conntrack-max-per-core 0 \
    --metrics-bind-address 127.0.0.1:10249 --healthz-bind-address 127.0.0.1:10256

  wait_for "node $node_name" 120 node_ready
  kubectl apply -f "$state/config/storageclass.yaml" -f "$state/config/runtimeclass.yaml" >/dev/null

  # The policy controller reads its node at start, so it starts once the node is
  # registered; `up` returns once its chains are in place. Whatever the policy,
  # it lets pods reach ports of the node's own addresses in its node-port range
  # (for node ports served on the node, as its own service proxy does); here
  # kube-proxy sends node-port traffic on to pods, where policies apply, so the
  # range is narrowed to ports 1-2, on which nothing listens.
  say "starting kube-router (network policies)"
  kubectl apply -f "$state/config/kube-router-rbac.yaml" >/dev/null
  start kube-router "$bin/kube-router" --kubeconfig "$pki/kube-router.kubeconfig" \
    --hostname-override "$node_name" --service-cluster-ip-range "$service_cidr" \
    --service-node-port-range 1-2 \
    --run-firewall=true --run-router=false --run-service-proxy=false --enable-cni=false \
    --health-port=0 --metrics-port=0 --v=1
  wait_for kube-router 60 network_policy_chains_ready
  wait_for "default service account" 60 kubectl -n default get serviceaccount default
}

network_policy_chains_ready() {
  pid_of kube-router >/dev/null && iptables -S FORWARD | grep -F -- '-j KUBE-ROUTER-FORWARD' >/dev/null
}

node_ready() {
  [ "$(kubectl get node "$node_name" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = True ]
}

# Imports each image of "REF ARCHIVE" lines on stdin that containerd does not
# have (by the archive's name, which carries its input hash).
import_archives() {
  local ref archive have
  have=$(ctr -n k8s.io images ls 2>/dev/null || true)
  while read -r ref archive; do
    # The label records which archive is in.
    if ! grep -q "^$ref .*sandlot.archive=$(basename "$archive")" <<<"$have"; then
      say "importing $ref"
      ctr -n k8s.io images import "$archive" >/dev/null
      ctr -n k8s.io images label "$ref" "sandlot.archive=$(basename "$archive")" >/dev/null
    fi
  done
}

# The locally built stand-ins for public images.
import_images() {
  import_archives < <(bash "$here/images/build.sh")
}

export_access() {
  mkdir -p "$repo/.cluster/bin"
  cp "$pki/admin.kubeconfig" "$repo/.cluster/kubeconfig"
  chmod 600 "$repo/.cluster/kubeconfig"
  ln -sfn "$bin/kubectl" "$repo/.cluster/bin/kubectl"
}

cmd_up() {
  [ "$(id -u)" = 0 ] || die "the local cluster needs root (containerd, kubelet, mounts)"
  local t0=$SECONDS
  if [ -x "$bin/kubectl" ] && healthy; then
    export_access
    # Stand-ins added or changed since the cluster started (those imported
    # already are skipped).
    import_images
    say "already running: node $node_name Ready, kubeconfig at .cluster/kubeconfig"
    return
  fi
  install_packages
  link_binaries
  make_pki
  write_configs
  if [ -d "$run" ]; then say "cleaning up an earlier cluster that is not fully running"; fi
  teardown
  start_cluster
  export_access
  say "up in $((SECONDS - t0))s: Kubernetes $k8s_version, node $node_name Ready; export KUBECONFIG=$repo/.cluster/kubeconfig"
}

cmd_down() {
  teardown
  ip addr del "$node_ip/32" dev lo 2>/dev/null || true
  cmd_standins down
  say "stopped; no process of the cluster runs"
}

cmd_status() {
  local name pid rc=0
  for name in "${components[@]}"; do
    if pid=$(pid_of "$name"); then
      printf '%-24s running (pid %s)\n' "$name" "$pid"
    else
      printf '%-24s not running\n' "$name"
      rc=1
    fi
  done
  if [ -x "$bin/kubectl" ] && [ $rc = 0 ]; then
    kubectl get nodes -o wide -l 'type!=kwok' 2>/dev/null || rc=1 # the scale cluster's fake nodes are counted below
  fi
  scale_status "$rc" # scale cluster
  return $rc
}

# Kills one component of a running cluster (SIGKILL: the worst case, no
# component says goodbye to its clients), leaves it down SECONDS and starts it
# again exactly as `up` does; only the API server is supported (tests/faults/).
cmd_restart() {
  local name=${1:-} down=${2:-0} pid i
  [ "$name" = kube-apiserver ] || die "usage: cluster.sh restart kube-apiserver [SECONDS]"
  [[ "$down" =~ ^[0-9]+$ ]] || die "SECONDS must be a whole number, not '$down'"
  pid=$(pid_of "$name") || die "$name is not running (make cluster)"
  say "killing $name (pid $pid)"
  kill -9 "$pid"
  for ((i = 0; i < 40; i++)); do # pid_of fails once it is gone (or a zombie)
    pid_of "$name" >/dev/null || break
    sleep 0.25
  done
  ! pid_of "$name" >/dev/null || die "$name (pid $pid) did not stop"
  # Its main thread can be a zombie while other threads still hold the
  # listening socket: wait until the port is free too.
  for ((i = 0; i < 40; i++)); do
    [ -z "$(ss -Hltn 'sport = :6443')" ] && break
    sleep 0.25
  done
  sleep "$down"
  say "starting $name"
  start_apiserver
  say "$name ready again"
}

# The example application's image (images/app.sh) with WHEEL installed, into
# the running cluster's containerd; prints its reference on stdout.
cmd_import_app() {
  local wheel=${1:-} line
  [ -f "$wheel" ] || die "usage: cluster.sh import-app WHEEL (make wheel builds dist/sandlot-*.whl)"
  [ -S "$containerd_sock" ] || die "the local cluster is not running (make cluster)"
  line=$(bash "$here/images/app.sh" "$wheel")
  import_archives <<<"$line" >&2
  echo "${line%% *}"
}

# The stand-in addresses (169.254.169.254, 198.51.100.7) as more addresses of the node, on lo like its own
# (this kernel has no dummy devices): a pod's packet to it goes to the bridge's
# gateway and is delivered locally, never routed on; rp_filter passes it, since
# the way back to a pod is the bridge it came in by. Without the address such a
# packet would be routed out of the machine, and the DROP in mangle stops it.
cmd_standins() {
  local ip_
  case "${1:-}" in
  up) for ip_ in "${standin_ips[@]}"; do
    ip -4 addr show dev lo | grep -F "inet $ip_/" >/dev/null || ip addr add "$ip_/32" dev lo
  done ;;
  down) for ip_ in "${standin_ips[@]}"; do ip addr del "$ip_/32" dev lo 2>/dev/null || true; done ;;
  *) die "usage: cluster.sh standins up|down" ;;
  esac
}

# >>> scale cluster
# --- scale cluster (KWOK) -----------------------------------------------------
#
# Fake nodes beside the real one, for tests at scale: KWOK's controller
# (sigs.k8s.io/kwok, built from kwok/) holds their leases and plays the
# lifecycle of the pods scheduled to them (the Stages in kwok/kwok.yaml), in the
# API alone: no container, image or address is behind any of it. A pod of
# RuntimeClass `kwok` lands only there (the RuntimeClass adds its nodeSelector
# and toleration to the pod at admission); every other pod still goes to the
# real node, which the fake nodes' taint keeps them off.

kwok_version=v0.8.0
kwok_nodes_default=50
kwok_node_prefix=kwok-node-
kwok_pod_cidr=10.128.0.0/12 # fake pods' IPs (10.128-10.143): clear of $pod_cidr, $service_cidr and $node_ip; nothing sends to them
# Each fake node's capacity: 50 nodes hold 50,000 pods of sandlot's default
# requests (10m CPU, 32Mi memory).
kwok_node_capacity='{cpu: "1000", memory: 1Ti, pods: "1000", ephemeral-storage: 10Ti}'

# Prints the path of kwok's binary (the kwok command of sigs.k8s.io/kwok, the
# controller alone), building it when its module changed.
kwok_binary() {
  local key out
  pinned kwok sigs.k8s.io/kwok "$kwok_version"
  key=$(cat "$here/kwok/go.mod" "$here/kwok/go.sum" | sha256sum | cut -c1-12)
  out=$cache/kwok-$kwok_version-$key/kwok
  if [ ! -x "$out" ]; then
    say "building kwok $kwok_version from Go modules (first time: about 2.5 minutes on 2 cores)" >&2
    mkdir -p "$(dirname "$out")"
    (cd "$here/kwok" && GOTOOLCHAIN=go1.26.10 go build -trimpath -ldflags "-s -w" \
      -o "$out.partial" sigs.k8s.io/kwok/cmd/kwok) >&2 || die "building kwok failed"
    mv "$out.partial" "$out"
  fi
  echo "$out"
}

# kwok's command line, into kwok_cmd: it manages the nodes labelled type=kwok
# (no other), holds their Leases (which keep them Ready) and logs warnings and
# errors only (INFO is a line per patch). Its work directory, where it would
# read a kwok.yaml of its own, is ours: nothing of the machine's ~/.kwok counts.
kwok_command() {
  kwok_cmd=(env "KWOK_WORKDIR=$run/kwok" "$bin/kwok" --kubeconfig "$pki/admin.kubeconfig"
    --config "$here/kwok/kwok.yaml" --manage-all-nodes=false --manage-nodes-with-label-selector type=kwok
    --cidr "$kwok_pod_cidr" --node-lease-duration-seconds 40 --v WARN)
}

scale_stop_kwok() {
  local pid i
  pid=$(pid_of kwok) || return 0
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 40; i++)); do
    pid_of kwok >/dev/null || return 0
    sleep 0.25
  done
  kill -9 "$pid" 2>/dev/null || true
}

scale_require_cluster() {
  local name
  for name in "${components[@]}"; do
    pid_of "$name" >/dev/null || die "the local cluster is not running ($name is not): make cluster first"
  done
  node_ready || die "node $node_name is not Ready"
}

# The fake nodes that exist, one name a line.
scale_nodes() {
  kubectl get nodes -l type=kwok -o 'jsonpath={range .items[*]}{.metadata.name}{"\n"}{end}'
}

scale_ready_nodes() { # how many fake nodes are Ready
  kubectl get nodes -l type=kwok -o 'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' |
    grep -c '^True$' || true
}

scale_held_nodes() { # how many fake nodes have a Lease (kwok holds them)
  kubectl -n kube-node-lease get leases -o 'jsonpath={range .items[*]}{.metadata.name}{"\n"}{end}' |
    grep -c "^$kwok_node_prefix" || true
}

# Deletes the pods bound to the nodes named on stdin at once (grace period 0,
# as a force delete: no kubelet is there to confirm), one request per
# namespace and node.
scale_delete_pods_on() {
  local nodes pairs ns node
  nodes=$(cat)
  [ -n "$nodes" ] || return 0
  pairs=$(kubectl get pods -A -o 'jsonpath={range .items[*]}{.metadata.namespace} {.spec.nodeName}{"\n"}{end}' |
    awk 'NR == FNR {fake[$1] = 1; next} ($2 in fake)' <(echo "$nodes") - | sort -u)
  while read -r ns node; do
    [ -n "$node" ] || continue
    kubectl delete --raw "/api/v1/namespaces/$ns/pods?fieldSelector=spec.nodeName%3D$node&gracePeriodSeconds=0" >/dev/null
  done <<<"$pairs"
}

scale_up() {
  local nodes=${1:-$kwok_nodes_default} t0=$SECONDS kwok key i have extra held kwok_cmd
  [[ "$nodes" =~ ^[1-9][0-9]*$ ]] || die "NODES must be a whole number above 0, not '$nodes'"
  scale_require_cluster
  kwok=$(kwok_binary)
  ln -sfn "$kwok" "$bin/kwok"
  kubectl apply -f - >/dev/null <<EOF
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata:
  name: kwok
  labels:
    app.kubernetes.io/managed-by: sandlot-local-cluster
handler: kwok
scheduling:
  nodeSelector:
    type: kwok
  tolerations:
  - {key: kwok.x-k8s.io/node, operator: Equal, value: fake, effect: NoSchedule}
EOF
  # kwok starts again when its binary, configuration or flags changed.
  kwok_command
  key=$({ readlink "$bin/kwok"; echo "${kwok_cmd[*]}"; cat "$here/kwok/kwok.yaml"; } | sha256sum | cut -c1-16)
  if ! pid_of kwok >/dev/null || [ "$(cat "$run/kwok.key" 2>/dev/null)" != "$key" ]; then
    scale_stop_kwok
    # Each kwok process has an identity of its own: the fake nodes' Leases that
    # an earlier one held would keep the new one off them until they expire.
    held=$(scale_nodes)
    [ -z "$held" ] || kubectl -n kube-node-lease delete lease --ignore-not-found --wait=false $held >/dev/null
    say "starting kwok $kwok_version"
    mkdir -p "$run/kwok"
    : >"$logs/kwok.log"
    start kwok "${kwok_cmd[@]}"
    echo "$key" >"$run/kwok.key"
  fi
  # The nodes missing are registered (with their capacity: a node's status is
  # taken as given when it is created); those already there are left as they are.
  have=$(scale_nodes)
  for ((i = 0; i < nodes; i++)); do
    grep -qx "$kwok_node_prefix$i" <<<"$have" && continue
    cat <<EOF
---
apiVersion: v1
kind: Node
metadata:
  name: $kwok_node_prefix$i
  labels:
    type: kwok
    kubernetes.io/hostname: $kwok_node_prefix$i
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    app.kubernetes.io/managed-by: sandlot-local-cluster
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
spec:
  taints:
  - {key: kwok.x-k8s.io/node, value: fake, effect: NoSchedule}
status:
  capacity: $kwok_node_capacity
  allocatable: $kwok_node_capacity
EOF
  done >"$run/kwok-nodes.yaml"
  if [ -s "$run/kwok-nodes.yaml" ]; then
    say "registering $(grep -c '^kind: Node$' "$run/kwok-nodes.yaml") fake nodes"
    kubectl create -f "$run/kwok-nodes.yaml" >/dev/null
  fi
  rm -f "$run/kwok-nodes.yaml"
  # Fewer nodes than before: the extra ones go, with their pods.
  extra=$(scale_nodes | awk -v n="$nodes" -v p="$kwok_node_prefix" 'substr($0, 1, length(p)) == p && substr($0, length(p) + 1) + 0 >= n')
  if [ -n "$extra" ]; then
    say "removing $(wc -l <<<"$extra") fake nodes beyond $nodes"
    scale_delete_pods_on <<<"$extra"
    kubectl delete node --wait=false $extra >/dev/null
  fi
  for ((i = 0; ; i++)); do
    pid_of kwok >/dev/null || die "kwok exited; $logs/kwok.log ends: $(tail -n 3 "$logs/kwok.log")"
    [ "$(scale_ready_nodes)" = "$nodes" ] && [ "$(scale_held_nodes)" = "$nodes" ] && break
    ((i < 240)) || die "the fake nodes are not all Ready after 120s; see $logs/kwok.log"
    sleep 0.5
  done
  say "scale cluster up in $((SECONDS - t0))s: $nodes fake nodes Ready; pods with runtimeClassName: kwok land there"
}

scale_down() {
  local t0=$SECONDS nodes
  scale_stop_kwok
  rm -rf "$run/kwok.key" "$run/kwok.pid" "$run/kwok"
  if ! kubectl get --raw /readyz >/dev/null 2>&1; then
    say "kwok stopped; the API server does not answer, so the fake nodes (if any) stay"
    return
  fi
  nodes=$(scale_nodes)
  scale_delete_pods_on <<<"$nodes"
  [ -z "$nodes" ] || kubectl delete nodes -l type=kwok --wait=false >/dev/null
  kubectl delete runtimeclass kwok --ignore-not-found >/dev/null
  say "scale cluster down in $((SECONDS - t0))s: kwok stopped; $(grep -c . <<<"$nodes" || true) fake nodes and their pods deleted"
}

# A line for `status`: kwok, its nodes and their pods (when the cluster runs).
scale_status() { # RC: 0 if the cluster runs
  local pid nodes ready pods
  if pid=$(pid_of kwok); then
    printf '%-24s running (process %s)\n' kwok "$pid"
  else
    printf '%-24s not running\n' kwok
  fi
  [ "$1" = 0 ] || return 0
  nodes=$(kubectl get nodes -l type=kwok -o 'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' 2>/dev/null) || return 0
  if [ -z "$nodes" ]; then
    echo "scale cluster: down (cluster.sh scale up [NODES])"
    return 0
  fi
  ready=$(grep -c '^True$' <<<"$nodes" || true)
  pods=$(kubectl get pods -A --field-selector "spec.nodeName!=$node_name,spec.nodeName!=" -o name 2>/dev/null | grep -c . || true)
  echo "scale cluster: $(grep -c . <<<"$nodes") fake nodes ($ready Ready), $pods pods on them"
}

cmd_scale() {
  case "${1:-}" in
  up) scale_up "${2:-}" ;;
  down) scale_down ;;
  *) die "usage: cluster.sh scale up [NODES] | scale down" ;;
  esac
}
# <<< scale cluster

case "${1:-}" in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
restart) cmd_restart "${2:-}" "${3:-}" ;;
import-app) cmd_import_app "${2:-}" ;;
standins) cmd_standins "${2:-}" ;;
scale) cmd_scale "${2:-}" "${3:-}" ;; # scale cluster
*) die "usage: cluster.sh up|down|status|restart kube-apiserver [SECONDS]|import-app WHEEL|standins up|down|scale up [NODES]|scale down" ;;
esac
