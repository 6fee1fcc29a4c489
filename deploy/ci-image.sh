#!/usr/bin/env bash
# Build the CPU image with no container registry: a Debian bookworm base made with
# mmdebstrap from Debian's apt mirror and `podman import`ed, passed as BASE_IMAGE to
# `buildah bud --isolation chroot`. pip inside the build uses this machine's pip setup:
# its configuration (merged into one pip.conf), CA bundle, local wheel directory and
# local indexes are mounted read-only into the RUN steps (never into the image).
# Prints timings and the runtime image size. Needs root (rootful podman/buildah).
#
#   deploy/ci-image.sh                 # build localhost/poolops:cpu
#   POOLOPS_REBUILD_BASE=1 POOLOPS_NO_CACHE=1 deploy/ci-image.sh   # from scratch (timings)
#   POOLOPS_IMAGE_TAG=... POOLOPS_IMAGE_CACHE=... POOLOPS_IMAGE_TARGET=... deploy/ci-image.sh
#   POOLOPS_IMAGE_TARGET=cuda POOLOPS_CUDA_BASE_IMAGE=localhost/poolops-base:bookworm \
#     POOLOPS_IMAGE_TAG=localhost/poolops:cuda-debian deploy/ci-image.sh   # the cuda recipe, no CUDA base
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TAG="${POOLOPS_IMAGE_TAG:-localhost/poolops:cpu}"
TARGET="${POOLOPS_IMAGE_TARGET:-cpu}"
BASE_TAG="${POOLOPS_BASE_TAG:-localhost/poolops-base:bookworm}"
CACHE="${POOLOPS_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/poolops-image}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
MAX_AGE_DAYS="${POOLOPS_BASE_MAX_AGE_DAYS:-7}"   # a cached base older than this is rebuilt
PYTHON="${PYTHON:-python3}"
t0=$(date +%s)
log() { echo "[ci-image +$(( $(date +%s) - t0 ))s] $*" >&2; }

for tool in mmdebstrap podman buildah; do
    command -v "$tool" >/dev/null || { echo "missing: $tool (apt-get install buildah podman mmdebstrap runc)" >&2; exit 2; }
done

# ---- 1. the base image: the podman store, else the cached tarball, else mmdebstrap ----
make_base() {
    mkdir -p "$CACHE"
    local tar="$CACHE/bookworm-python3.tar"
    if [ -s "$tar" ] && [ -z "$(find "$tar" -mtime +"$MAX_AGE_DAYS")" ]; then
        log "base: cached $tar"
    else
        log "base: mmdebstrap bookworm (python3, python3-venv, ca-certificates) from $MIRROR"
        rm -rf "$tar.part"
        mmdebstrap --quiet --format=tar --variant=minbase --include=python3,python3-venv,ca-certificates \
            --aptopt='Acquire::Retries "3"' \
            --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
            --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
            bookworm "$tar.part" "$MIRROR"
        mv "$tar.part" "$tar"
    fi
    if ! podman import --quiet "$tar" "$BASE_TAG" >/dev/null; then
        [ "${1:-}" = retry ] && { echo "podman import $tar failed" >&2; exit 1; }
        log "base: import failed, rebuilding the tarball"
        rm -rf "$tar"; make_base retry; return
    fi
}
if podman image exists "$BASE_TAG" && [ "${POOLOPS_REBUILD_BASE:-0}" != 1 ]; then
    log "base: $BASE_TAG already in the store"
else
    make_base
fi

# ---- 2. pip's configuration on this machine, for the RUN steps --------------------------
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
"$PYTHON" - "$work/pip.conf" > "$work/mounts" <<'EOF'
# `pip config list` (files and PIP_* variables, later ones win) -> one pip.conf, and the
# local paths it names (find-links, file:// indexes with their files, cert), which the
# build must see.
import configparser, os, subprocess, sys
out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
conf = configparser.ConfigParser()
env = {}
for line in out.splitlines():
    key, _, value = line.partition("=")
    section, _, name = key.partition(".")
    value = value.strip().strip("'\"")
    if section == ":env:":
        env[name] = value
        continue
    conf.setdefault(section, {})
    conf[section][name] = value
conf.setdefault("global", {})
for name, value in env.items():
    conf["global"][name] = value
paths = set()
for section in conf.sections():
    for value in conf[section].values():
        for word in value.split():
            p = word[len("file://"):] if word.startswith("file://") else word
            if word.startswith("file://") and os.path.basename(p.rstrip("/")) == "simple":
                p = os.path.dirname(p.rstrip("/"))  # a local index links to its files beside simple/
            if p.startswith("/") and os.path.exists(p):
                paths.add(os.path.realpath(p) if os.path.isfile(p) else p.rstrip("/"))
with open(sys.argv[1], "w") as f:
    conf.write(f)
for p in sorted(paths):
    print(p)
EOF
mounts=(--volume "$work/pip.conf:/etc/pip.conf:ro")
ca=/etc/ssl/certs/ca-certificates.crt
[ -f "$ca" ] && mounts+=(--volume "$ca:$ca:ro")
while read -r p; do
    [ -n "$p" ] && [ "$p" != "$ca" ] && mounts+=(--volume "$p:$p:ro")
done < "$work/mounts"
log "pip inside the build: $(tr '\n' ' ' < "$work/pip.conf")"

# ---- 3. the image ------------------------------------------------------------------------
log "build: buildah bud --target $TARGET --build-arg BASE_IMAGE=$BASE_TAG -> $TAG"
tb=$(date +%s)
cache=(--layers); [ "${POOLOPS_NO_CACHE:-0}" = 1 ] && cache+=(--no-cache)
# the cuda target's base (default: the Dockerfile's nvidia/cuda image, from a registry)
[ -n "${POOLOPS_CUDA_BASE_IMAGE:-}" ] && cache+=(--build-arg CUDA_BASE_IMAGE="$POOLOPS_CUDA_BASE_IMAGE")
buildah bud --isolation chroot --format docker "${cache[@]}" \
    --build-arg BASE_IMAGE="$BASE_TAG" --target "$TARGET" "${mounts[@]}" \
    --tag "$TAG" --file "$ROOT/Dockerfile" "$ROOT" >&2
log "build: $(( $(date +%s) - tb ))s"
size=$(podman image inspect --format '{{.Size}}' "$TAG")
log "runtime image $TAG: $size bytes"
echo "IMAGE=$TAG"
echo "IMAGE_SIZE_BYTES=$size"
echo "IMAGE_SIZE_MB=$(( size / 1000000 ))"
echo "BUILD_SECONDS=$(( $(date +%s) - t0 ))"
