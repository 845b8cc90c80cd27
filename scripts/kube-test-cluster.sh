#!/usr/bin/env bash
# A real Kubernetes control plane for deploy-rs's tests: etcd, kube-apiserver and
# kube-controller-manager 1.20.2 on loopback, built from Debian bookworm's `kubernetes`
# source package with Debian's Go 1.19 (no image is pulled; no kubelet or scheduler
# runs: the tests' node stand-in writes pod statuses).
#
#   scripts/kube-test-cluster.sh build   build the two binaries once into $PREFIX (skipped when present)
#   scripts/kube-test-cluster.sh start   start etcd, the apiserver and the controller-manager on free
#                                        loopback ports; state in $STATE; writes $STATE/kubeconfig and
#                                        an audit log of every request to $STATE/audit.log
#   scripts/kube-test-cluster.sh env     print `export KUBECONFIG=...` for a started cluster
#   scripts/kube-test-cluster.sh stop    stop what `start` started, by pid, and remove its etcd data
#
# PREFIX defaults to /opt/deploy-rs/kube-1.20.2, STATE to /tmp/deploy-rs-kube.
# Every failure names the step that failed and where its log is.
set -euo pipefail

PREFIX=${DEPLOY_RS_KUBE_PREFIX:-/opt/deploy-rs/kube-1.20.2}
STATE=${DEPLOY_RS_KUBE_STATE:-/tmp/deploy-rs-kube}
KUBE_VERSION=v1.20.2

fail() { echo "kube-test-cluster: $*" >&2; exit 1; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

apt_install() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    echo "kube-test-cluster: installing ${missing[*]}"
    as_root apt-get update -qq || fail "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || fail "apt-get install ${missing[*]} failed"
}

build_in() { # build_in <work dir>: runs in its own bash, so that set -e holds
    local work=$1
    cd "$work"
    apt-get source --download-only kubernetes
    tar xzf kubernetes_*.orig.tar.gz
    src=$(ls -d "$work"/kubernetes-1.*/)
    # The vendored reflect2 1.0.1 is unsafe with Go >= 1.18: use Debian's 1.0.2.
    rm -rf "$src/vendor/github.com/modern-go/reflect2"
    cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$src/vendor/github.com/modern-go/reflect2"
    rm -f "$src/vendor/github.com/modern-go/reflect2/go.mod"
    # GOPATH mode, as the 1.20 build does (module mode with -mod=vendor fails).
    mkdir -p "$work/gopath/src/k8s.io"
    ln -sfn "$src" "$work/gopath/src/k8s.io/kubernetes"
    cd "$work/gopath/src/k8s.io/kubernetes"
    export PATH=/usr/lib/go-1.19/bin:$PATH GOPATH=$work/gopath GO111MODULE=off CGO_ENABLED=0 GOPROXY=off \
        GOCACHE=$work/gocache
    # 1.20 generates pkg/generated/openapi at build time (make generated_files).
    go build -o "$work/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
    dirs=$(find -H . \( -not \( \( -path ./_\* -o -path ./.\* -o -path ./vendor \) -prune \) \) -type f -name '*.go' \
        | sed 's|^./staging/src|vendor|; s|^\./||' | xargs grep -l '^// *+k8s:' | xargs grep -l '+k8s:openapi-gen=' \
        | grep -v -E '^vendor/k8s.io/(code-generator|sample-apiserver)/' | sed 's|/[^/]*$||' | sort -u \
        | sed 's|^|k8s.io/kubernetes/|' | paste -sd, -)
    "$work/openapi-gen" -i "$dirs" -p k8s.io/kubernetes/pkg/generated/openapi -O zz_generated.openapi \
        -h vendor/k8s.io/code-generator/hack/boilerplate.go.txt -r "$work/openapi-violations.txt"
    ld="-s -w"
    for v in k8s.io/kubernetes/vendor/k8s.io/component-base/version k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version; do
        ld="$ld -X $v.gitVersion=$KUBE_VERSION -X $v.gitMajor=1 -X $v.gitMinor=20 -X $v.gitTreeState=clean"
    done
    mkdir -p "$work/out"
    for c in kube-apiserver kube-controller-manager; do
        go build -ldflags "$ld" -o "$work/out/$c" ./cmd/$c
    done
}

build() {
    if [ -x "$PREFIX/bin/kube-apiserver" ] && [ -x "$PREFIX/bin/kube-controller-manager" ]; then
        echo "kube-test-cluster: $KUBE_VERSION binaries present in $PREFIX/bin, build skipped"
        return 0
    fi
    apt_install etcd-server openssl curl
    # deb-src entries derived from the machine's own Debian sources.
    if ! apt-cache showsrc kubernetes 2>/dev/null | grep -q '^Package: kubernetes'; then
        local src=/etc/apt/sources.list.d/debian.sources
        [ -f "$src" ] || fail "build: no $src to derive deb-src entries from"
        sed 's/^Types: deb$/Types: deb-src/' "$src" | as_root tee /etc/apt/sources.list.d/deploy-rs-debian-src.sources >/dev/null
        as_root apt-get update -qq || fail "build: apt-get update (deb-src) failed"
    fi
    apt_install golang-1.19-go golang-github-modern-go-reflect2-dev
    local work; work=$(mktemp -d /tmp/deploy-rs-kube-src.XXXX)
    local log="$work/build.log"
    echo "kube-test-cluster: building kube-apiserver and kube-controller-manager $KUBE_VERSION (about 10 CPU-minutes, once); log: $log"
    bash "$0" _build_in "$work" >"$log" 2>&1 || { tail -n 30 "$log" >&2; fail "build failed (log: $log)"; }
    as_root mkdir -p "$PREFIX/bin"
    as_root install -m 0755 "$work/out/kube-apiserver" "$work/out/kube-controller-manager" "$PREFIX/bin/"
    rm -rf "$work"
    echo "kube-test-cluster: built into $PREFIX/bin"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_for() { # wait_for <what> <log> <seconds> <command...>
    local what=$1 log=$2 secs=$3; shift 3
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 30 "$log" >&2 || true
            stop >/dev/null 2>&1 || true
            fail "start: $what not ready after ${secs}s (log: $log)"
        fi
        sleep 0.2
    done
}

start() {
    [ -x "$PREFIX/bin/kube-apiserver" ] || fail "start: no $PREFIX/bin/kube-apiserver; run '$0 build' first"
    command -v etcd >/dev/null || fail "start: etcd not found; run '$0 build' (installs etcd-server)"
    if [ -f "$STATE/apiserver.pid" ] && kill -0 "$(cat "$STATE/apiserver.pid")" 2>/dev/null; then
        echo "kube-test-cluster: already running (KUBECONFIG=$STATE/kubeconfig)"
        return 0
    fi
    stop >/dev/null 2>&1 || true
    mkdir -p "$STATE"
    cd "$STATE"
    [ -f sa.key ] || { openssl genrsa -out sa.key 2048 2>/dev/null && openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null; } \
        || fail "start: openssl could not make the service-account key"
    echo "deploy-rs-test-token,admin,admin,system:masters" > tokens.csv
    # Every request at Metadata level (verb, resource, user agent, timestamps), so
    # that tests can count what a rollout asks of the server.
    cat > audit-policy.yaml <<'AUDIT'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
AUDIT
    rm -f audit.log
    local etcd_port etcd_peer api_port kcm_port
    etcd_port=$(free_port); etcd_peer=$(free_port); api_port=$(free_port); kcm_port=$(free_port)
    local etcd_dir=/dev/shm/deploy-rs-etcd-$(basename "$STATE")
    [ -d /dev/shm ] || etcd_dir=$STATE/etcd
    rm -rf "$etcd_dir"; echo "$etcd_dir" > etcd.dir
    etcd --name default --data-dir "$etcd_dir" \
        --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
        --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
        --initial-cluster "default=http://127.0.0.1:$etcd_peer" --listen-metrics-urls '' > etcd.log 2>&1 &
    echo $! > etcd.pid
    wait_for etcd etcd.log 30 curl -sf "http://127.0.0.1:$etcd_port/health"
    "$PREFIX/bin/kube-apiserver" --etcd-servers="http://127.0.0.1:$etcd_port" \
        --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" --insecure-port=0 \
        --cert-dir="$STATE/certs" --token-auth-file="$STATE/tokens.csv" --authorization-mode=AlwaysAllow \
        --service-account-issuer=https://kubernetes.default.svc.cluster.local \
        --service-account-key-file="$STATE/sa.pub" --service-account-signing-key-file="$STATE/sa.key" \
        --service-cluster-ip-range=10.96.0.0/16 --endpoint-reconciler-type=none \
        --disable-admission-plugins=ServiceAccount --enable-priority-and-fairness=false \
        --audit-policy-file="$STATE/audit-policy.yaml" --audit-log-path="$STATE/audit.log" \
        --audit-log-maxsize=500 --audit-log-maxbackup=1 > apiserver.log 2>&1 &
    echo $! > apiserver.pid
    wait_for kube-apiserver apiserver.log 120 \
        curl -skf -H 'Authorization: Bearer deploy-rs-test-token' "https://127.0.0.1:$api_port/readyz"
    cat > kubeconfig <<KC
apiVersion: v1
kind: Config
clusters:
- name: deploy-rs-test
  cluster: {server: "https://127.0.0.1:$api_port", certificate-authority: "$STATE/certs/apiserver.crt"}
contexts:
- name: deploy-rs-test
  context: {cluster: deploy-rs-test, user: admin, namespace: default}
current-context: deploy-rs-test
users:
- name: admin
  user: {token: deploy-rs-test-token}
KC
    "$PREFIX/bin/kube-controller-manager" --kubeconfig="$STATE/kubeconfig" --leader-elect=false \
        --bind-address=127.0.0.1 --port=0 --secure-port="$kcm_port" \
        --controllers=deployment,replicaset,garbagecollector,namespace,serviceaccount,serviceaccount-token,resourcequota,statefulset,job,cronjob \
        --service-account-private-key-file="$STATE/sa.key" --root-ca-file="$STATE/certs/apiserver.crt" \
        --use-service-account-credentials=false > kcm.log 2>&1 &
    echo $! > kcm.pid
    wait_for kube-controller-manager kcm.log 60 curl -skf "https://127.0.0.1:$kcm_port/healthz"
    echo "kube-test-cluster: ready; KUBECONFIG=$STATE/kubeconfig"
}

stop() {
    [ -d "$STATE" ] || return 0
    for p in kcm apiserver etcd; do
        if [ -f "$STATE/$p.pid" ]; then
            local pid; pid=$(cat "$STATE/$p.pid")
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
            rm -f "$STATE/$p.pid"
        fi
    done
    [ -f "$STATE/etcd.dir" ] && rm -rf "$(cat "$STATE/etcd.dir")" "$STATE/etcd.dir"
    return 0
}

env_cmd() {
    [ -f "$STATE/kubeconfig" ] || fail "env: no cluster started (no $STATE/kubeconfig)"
    echo "export KUBECONFIG=$STATE/kubeconfig"
}

case "${1:-}" in
    build) build ;;
    _build_in) build_in "$2" ;;
    start) start ;;
    stop) stop ;;
    env) env_cmd ;;
    *) echo "usage: $0 build|start|stop|env" >&2; exit 2 ;;
esac
