#!/usr/bin/env bash
# Builds what travels to a lent GPU machine into .gpu-carry/ (git-ignored) at the checkout's
# root: the release netc, the GPU test executables (cargo test --no-run --release), each
# stripped and xz-compressed, the Vulkan/EGL loader packages the device README names, and a
# manifest. Then checks that the working tree plus .gpu-carry stays under the device's 64 MiB.
# Run it on this machine (x86-64), from anywhere inside the checkout:
#   benches/device/build.sh            # CARGO_TARGET_DIR is honoured
# then, here against lavapipe:   python3 benches/device/run.py --preset lavapipe
# or on the device (one `device` call, carry [".gpu-carry"]):
#   PYTHONUNBUFFERED=1 python3 benches/device/run.py --out $OUT
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
carry=${GPU_CARRY:-.gpu-carry}
limit_mib=${GPU_CARRY_LIMIT_MIB:-60}   # the device takes 64 MiB in all; keep a margin
rm -rf "$carry"
mkdir -p "$carry/bin" "$carry/gl" "$carry/vt"
json=$(mktemp)
trap 'rm -f "$json"' EXIT

echo "== cargo build --release --bin netc" >&2
cargo build --release --locked --bin netc --message-format=json-render-diagnostics >"$json"
echo "== cargo test --release --no-run (GPU test executables)" >&2
cargo test --release --locked --no-run -p netc-runtime --test gpu_vs_cpu \
    --message-format=json-render-diagnostics >>"$json"
cargo test --release --locked --no-run -p netc --test train --test image_folder \
    --message-format=json-render-diagnostics >>"$json"

# Copy, strip and compress each executable; write the manifest run.py reads (the compiled-in
# CARGO_MANIFEST_DIR and CARGO_BIN_EXE_netc paths, which the device recreates as links).
python3 - "$json" "$carry" "$root" <<'PY'
import json, lzma, os, shutil, subprocess, sys, time
log, carry, root = sys.argv[1:4]
want = {("bin", "netc"), ("test", "gpu_vs_cpu"), ("test", "train"), ("test", "image_folder")}
found = {}
for line in open(log):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") != "compiler-artifact" or not m.get("executable"):
        continue
    t = m["target"]
    kind = "test" if m["profile"]["test"] else t["kind"][0]
    if (kind, t["name"]) in want:
        found[(kind, t["name"])] = (m["executable"], os.path.dirname(m["manifest_path"]))
missing = want - set(found)
if missing:
    sys.exit(f"build.sh: no executable for {sorted(missing)}")
netc_exe = found[("bin", "netc")][0]
manifest = {"built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "root": root,
            "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
            "dirty": bool(subprocess.run(["git", "status", "--porcelain", "-uno"], capture_output=True, text=True).stdout.strip()),
            "bin_exe_netc": netc_exe, "executables": {}}
for (kind, name), (exe, mdir) in sorted(found.items()):
    plain = os.path.join(carry, "bin", name)
    shutil.copy(exe, plain)
    subprocess.run(["strip", plain], check=True)
    data = open(plain, "rb").read()
    with lzma.open(plain + ".xz", "wb", preset=6) as f:
        f.write(data)
    os.remove(plain)
    manifest["executables"][name] = {"kind": kind, "file": f"bin/{name}.xz", "manifest_dir": mdir,
                                     "stripped_bytes": len(data),
                                     "xz_bytes": os.path.getsize(plain + ".xz")}
    print(f"  {name}: {len(data)/2**20:.1f} MiB stripped, {os.path.getsize(plain + '.xz')/2**20:.1f} MiB xz", file=sys.stderr)
json.dump(manifest, open(os.path.join(carry, "manifest.json"), "w"), indent=1)
PY

# The loaders the device README names (unpacked into / there when libvulkan is missing), and
# vulkaninfo with its libraries (unpacked under /tmp there, never into /).
echo "== apt-get download (Vulkan, EGL, GL loaders; vulkan-tools)" >&2
lists=$(mktemp -d)
o="-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=$lists"
mkdir -p "$lists/partial"
apt-get $o update >/dev/null
(cd "$carry/gl" && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 2>/dev/null)
(cd "$carry/vt" && apt-get $o download vulkan-tools libwayland-client0 libx11-6 libxcb1 libxau6 libxdmcp6 libbsd0 libmd0 libffi8 2>/dev/null) \
    || echo "  (vulkan-tools not downloaded; run.py skips vulkaninfo)" >&2
rm -rf "$lists"

# Size: tracked and untracked-not-ignored files travel too.
tree=$(git ls-files -z -co --exclude-standard | xargs -0 stat -c %s 2>/dev/null | awk '{s+=$1} END {print s+0}')
extra=$(du -sb "$carry" | cut -f1)
total=$((tree + extra))
printf '== travels: working tree %.1f MiB + %s %.1f MiB = %.1f MiB (limit %s MiB)\n' \
    "$(echo "$tree/1048576" | bc -l)" "$carry" "$(echo "$extra/1048576" | bc -l)" \
    "$(echo "$total/1048576" | bc -l)" "$limit_mib" >&2
if [ "$total" -gt $((limit_mib * 1048576)) ]; then
    echo "build.sh: what travels is over ${limit_mib} MiB" >&2
    exit 1
fi
echo "ready: carry [\"$carry\"]; run: PYTHONUNBUFFERED=1 python3 benches/device/run.py --out \$OUT" >&2
