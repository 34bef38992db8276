#!/usr/bin/env python3
"""netc on a real GPU, in one command: the adapter, the GPU tests, `netc bench` and the PyTorch
CUDA peers, written as one JSON, a log and a README table under --out ($OUT on the device).

Runs what benches/device/build.sh put in .gpu-carry/ (netc, the test executables, the loader
packages). Every part has its own timeout and the whole run a budget (default 450 s, inside the
8 minutes the device allows for it); a part that runs out is recorded as "timed out" and the run
goes on. Dependency-free (python3 alone).

On a lent machine (one `device` call, carry [".gpu-carry"]):
    PYTHONUNBUFFERED=1 python3 benches/device/run.py --out $OUT
Here, against lavapipe (smaller batches and fewer repetitions; the flags say which):
    python3 benches/device/run.py --preset lavapipe
"""
import argparse
import glob
import json
import lzma
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.dont_write_bytecode = True
sys.path.insert(0, HERE)
import render  # noqa: E402  (benches/device/render.py: the README table from the JSON)

# The steps the issue names; transformer models join once models/ has them.
MODELS = [("mlp", None), ("gan", "models/gan.yaml"), ("lenet", "models/lenet.net"),
          ("dcgan", "models/dcgan.net"), ("alexnet", "models/alexnet.net")]
TRANSFORMER_WORDS = ("transformer", "gpt", "bert", "vit", "attention")

# fp32 peak (non-tensor FMA lanes x 2 x boost clock) of the cards this workplace lends, and
# FP32 lanes per SM by compute capability for a card not in the table.
PEAKS = [("H200 NVL", 60.3), ("H200", 66.9), ("H100 NVL", 60.3), ("H100 PCIe", 51.2),
         ("H100 80GB HBM3", 66.9), ("H100 SXM", 66.9), ("H100", 66.9), ("A100", 19.5)]
LANES = {"9.0": 128, "8.9": 128, "8.6": 128, "8.0": 64, "7.5": 64, "7.0": 64}

PRESETS = {
    # what the issue asks of the real GPU
    "gpu": dict(batch=128, reps=20, model_batch="", gemm="4096x4096x4096:tb", profile="alexnet",
                budget=450, test_timeout=150, train_test_timeout=60, dense_timeout=60, bench_timeout=50,
                profile_timeout=80, torch_timeout=120, keep_for_bench=200, keep_for_torch=60),
    # lavapipe on a 2-core machine: smaller steps, fewer repetitions, longer timeouts
    "lavapipe": dict(batch=32, reps=2, model_batch="alexnet=4", gemm="4096x4096x4096:tb",
                     profile="alexnet", budget=460, test_timeout=200, train_test_timeout=60,
                     dense_timeout=90, bench_timeout=40, profile_timeout=80, torch_timeout=40, keep_for_bench=150,
                     keep_for_torch=5),
}


class Run:
    def __init__(self, a):
        self.a = a
        self.t0 = time.time()
        self.deadline = self.t0 + a.budget
        os.makedirs(a.out, exist_ok=True)
        self.log = open(os.path.join(a.out, "netc-gpu.log"), "w")
        self.env = dict(os.environ)
        self.env.setdefault("RUST_BACKTRACE", "1")
        self.res = {"schema": 1, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "host": platform.node(), "preset": a.preset,
                    "settings": {k: getattr(a, k) for k in
                                 ("batch", "reps", "model_batch", "gemm", "profile", "budget")},
                    "setup": {}, "adapter": {}, "tests": {}, "dense": [], "models": {},
                    "profile": {"status": "not run"}, "torch": {"status": "not run"}}

    # ---- plumbing ------------------------------------------------------------------------

    def say(self, msg):
        line = f"[{time.time() - self.t0:6.1f}s] {msg}"
        print(line, flush=True)
        self.log.write(line + "\n")
        self.log.flush()

    def left(self):
        return self.deadline - time.time()

    def save(self):
        self.res["wall_s"] = round(time.time() - self.t0, 1)
        path = os.path.join(self.a.out, "netc-gpu.json")
        with open(path + ".tmp", "w") as f:
            json.dump(self.res, f, indent=1)
        os.replace(path + ".tmp", path)
        with open(os.path.join(self.a.out, "netc-gpu.md"), "w") as f:
            f.write(render.section(self.res))

    def run(self, name, cmd, timeout, cwd=ROOT, env=None, stop=None, reserve=0):
        """Runs cmd in its own process group, its output streamed into the log; at most
        `timeout` seconds, never past the budget less `reserve` (seconds kept for the parts
        after it). `stop(line)` returning True ends it early on purpose. Returns (status,
        lines, seconds): status is "ok", "failed (rc N)", "timed out after N s", "stopped" or
        "skipped (budget spent)"."""
        timeout = min(timeout, self.left() - 3 - reserve)
        if timeout < 2:
            self.say(f"-- {name}: skipped, the budget is spent")
            return "skipped (budget spent)", [], 0.0
        self.say(f"-- {name} (timeout {timeout:.0f} s): {' '.join(cmd)}")
        lines = []
        stopped = threading.Event()
        t0 = time.time()
        try:
            p = subprocess.Popen(cmd, cwd=cwd, env=env or self.env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True, text=True, errors="replace", bufsize=1)
        except OSError as e:
            self.say(f"   cannot start: {e}")
            return f"failed (cannot start: {e})", [], 0.0

        def kill():
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        def reader():
            for line in p.stdout:
                line = line.rstrip("\n")
                lines.append(line)
                self.log.write(f"   {line}\n")
                if stop and not stopped.is_set() and stop(line):
                    stopped.set()
                    kill()
            self.log.flush()

        th = threading.Thread(target=reader, daemon=True)
        th.start()
        try:
            rc = p.wait(timeout=timeout)
            status = "ok" if rc == 0 else f"failed (rc {rc})"
        except subprocess.TimeoutExpired:
            kill()
            p.wait()
            status = f"timed out after {timeout:.0f} s"
        th.join(5)
        # the group may hold children (a test's netc) that outlived the leader
        kill()
        if stopped.is_set():
            status = "stopped"
        dt = time.time() - t0
        self.say(f"   {name}: {status} in {dt:.1f} s")
        return status, lines, round(dt, 1)

    # ---- setup ---------------------------------------------------------------------------

    def setup(self):
        a, s = self.a, self.res["setup"]
        carry = os.path.join(ROOT, a.carry)
        man_path = os.path.join(carry, "manifest.json")
        if not os.path.exists(man_path):
            s["status"] = f"no {a.carry}/manifest.json: run benches/device/build.sh first"
            self.say(s["status"])
            return False
        man = json.load(open(man_path))
        s.update(commit=man.get("commit"), dirty=man.get("dirty"), built=man.get("built"))
        # The Vulkan and EGL loaders, as the device README says, only where none is installed.
        ldconfig = shutil.which("ldconfig") or next(
            (p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig") if os.path.exists(p)), None)
        have = any(os.path.exists(os.path.join(d, "libvulkan.so.1")) for d in
                   ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib",
                    "/usr/local/lib")) or (ldconfig is not None and "libvulkan.so.1 " in subprocess.run(
                        [ldconfig, "-p"], capture_output=True, text=True).stdout)
        debs = sorted(glob.glob(os.path.join(carry, "gl", "*.deb")))
        if have:
            s["loaders"] = "libvulkan.so.1 already installed"
        elif debs and os.geteuid() == 0 and shutil.which("dpkg"):
            for d in debs:
                subprocess.run(["dpkg", "-x", d, "/"], check=False)
            if ldconfig:
                subprocess.run([ldconfig], check=False)
            s["loaders"] = f"unpacked {len(debs)} packages into /"
        else:
            s["loaders"] = "no libvulkan.so.1 and none unpacked (not root, or no packages)"
        self.say(f"loaders: {s['loaders']}")
        # The NVIDIA driver's ICD outside the loader's search path: point the loader at it.
        icd = "/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json"
        std = [f for d in ("/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d", "/usr/local/share/vulkan/icd.d")
               for f in glob.glob(os.path.join(d, "*.json"))]
        if os.path.exists(icd) and not any("nvidia" in os.path.basename(f).lower() for f in std) \
                and "VK_DRIVER_FILES" not in self.env:
            self.env["VK_DRIVER_FILES"] = icd
            egl = "/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json"
            if os.path.exists(egl):
                self.env["__EGL_VENDOR_LIBRARY_FILENAMES"] = egl
            s["vk_driver_files"] = icd
            self.say(f"VK_DRIVER_FILES={icd}")
        # The executables, unpacked outside the checkout.
        bindir = a.bin_dir
        os.makedirs(bindir, exist_ok=True)
        self.exe = {}
        for name, e in man["executables"].items():
            dst = os.path.join(bindir, name)
            with lzma.open(os.path.join(carry, e["file"])) as f, open(dst + ".tmp", "wb") as g:
                shutil.copyfileobj(f, g)
            os.chmod(dst + ".tmp", 0o755)
            os.replace(dst + ".tmp", dst)
            self.exe[name] = (dst, e["manifest_dir"])
        # Paths compiled into the tests: CARGO_MANIFEST_DIR (models/ beside it) and
        # CARGO_BIN_EXE_netc. Where they do not exist (the device), links stand in for them.
        links = []
        for src, dst in [(ROOT, man["root"]), (self.exe["netc"][0], man["bin_exe_netc"])]:
            if os.path.lexists(dst):
                continue
            try:
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                os.symlink(src, dst)
                links.append(f"{dst} -> {src}")
            except OSError as e:
                links.append(f"{dst}: cannot link ({e})")
        s["links"] = links
        for l in links:
            self.say(f"link {l}")
        s["status"] = "ok"
        return True

    # ---- parts ---------------------------------------------------------------------------

    def adapter(self):
        ad = self.res["adapter"]
        netc = self.exe["netc"][0]
        st, lines, _ = self.run("netc devices", [netc, "devices"], 30)
        ad["devices_status"] = st
        ad["devices"] = parse_devices(lines)
        ad["devices_raw"] = lines
        hw = [d for d in ad["devices"] if d["type"] not in ("Cpu", "Other")]
        if not hw and "VK_DRIVER_FILES" not in self.env:
            icd = "/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json"
            if os.path.exists(icd):
                self.env["VK_DRIVER_FILES"] = icd
                st, lines, _ = self.run("netc devices (VK_DRIVER_FILES)", [netc, "devices"], 30)
                ad["devices"] = parse_devices(lines)
                ad["devices_raw"] = lines
                hw = [d for d in ad["devices"] if d["type"] not in ("Cpu", "Other")]
        if self.a.device:
            ad["bench_device"] = self.a.device
        elif hw:
            ad["bench_device"] = "gpu"
        elif any(d["backend"] == "Vulkan" for d in ad["devices"]):
            ad["bench_device"] = "vulkan"
        else:
            ad["bench_device"] = "auto"
        ad["hardware"] = bool(hw)
        # vulkaninfo: installed, else the carried vulkan-tools unpacked under /tmp
        vi = shutil.which("vulkaninfo")
        env = self.env
        if not vi:
            debs = glob.glob(os.path.join(ROOT, self.a.carry, "vt", "*.deb"))
            if debs and shutil.which("dpkg"):
                vt = os.path.join(self.a.bin_dir, "vt")
                for d in debs:
                    subprocess.run(["dpkg", "-x", d, vt], check=False)
                cand = os.path.join(vt, "usr", "bin", "vulkaninfo")
                if os.path.exists(cand):
                    vi = cand
                    env = dict(self.env)
                    env["LD_LIBRARY_PATH"] = ":".join(
                        [os.path.join(vt, "usr", "lib", "x86_64-linux-gnu"), os.path.join(vt, "lib", "x86_64-linux-gnu")]
                        + ([env["LD_LIBRARY_PATH"]] if env.get("LD_LIBRARY_PATH") else []))
        if vi:
            st, lines, _ = self.run("vulkaninfo --summary", [vi, "--summary"], 20, env=env)
            ad["vulkaninfo"] = {"status": st, "summary": vulkan_summary(lines)}
        else:
            ad["vulkaninfo"] = {"status": "not present"}
        if shutil.which("nvidia-smi"):
            q = "name,driver_version,clocks.max.sm,clocks.sm,memory.total,power.limit,temperature.gpu"
            st, lines, _ = self.run("nvidia-smi", ["nvidia-smi", f"--query-gpu={q}",
                                                   "--format=csv,noheader"], 20)
            ad["nvidia_smi"] = {"status": st, "fields": q.split(","),
                                "values": [v.strip() for v in lines[0].split(",")] if lines and st == "ok" else lines}
        else:
            ad["nvidia_smi"] = {"status": "not present"}
        self.save()

    def tests(self):
        t = self.res["tests"]
        env = dict(self.env)
        env["NETC_REQUIRE_GPU"] = "1"
        parts = [("gpu_vs_cpu", "gpu_vs_cpu", [], self.a.test_timeout),
                 ("train_gpu", "train", ["gpu"], self.a.train_test_timeout),
                 ("image_folder_gpu", "image_folder", ["gpu_path"], self.a.train_test_timeout)]
        for key, exe, filt, timeout in parts:
            if exe not in self.exe:
                t[key] = {"status": "not built (no executable in the carry folder)"}
                continue
            path, mdir = self.exe[exe]
            # cargo runs a test executable in its package's folder
            cwd = mdir if os.path.isdir(mdir) else ROOT
            st, lines, secs = self.run(f"tests {key}", [path] + filt + ["--color", "never"],
                                       timeout, cwd=cwd, env=env,
                                       reserve=self.a.keep_for_bench + self.a.keep_for_torch)
            r = parse_libtest(lines)
            if st == "ok" and r.get("failed"):
                st = "failed"
            r.update(status=st, seconds=secs, filter=" ".join(filt) or None)
            t[key] = r
            self.save()

    def bench_models(self):
        a = self.res["adapter"]
        netc = self.exe["netc"][0]
        per = dict(kv.split("=") for kv in self.a.model_batch.split(",") if kv)
        models = list(MODELS)
        for f in sorted(glob.glob(os.path.join(ROOT, "models", "*.net")) +
                        glob.glob(os.path.join(ROOT, "models", "*.yaml"))):
            stem = os.path.splitext(os.path.basename(f))[0]
            if any(w in stem.lower() for w in TRANSFORMER_WORDS):
                models.append((stem, os.path.relpath(f, ROOT)))
        if self.a.models:
            keep = self.a.models.split(",")
            models = [m for m in models if m[0] in keep]
        self.dense()
        for name, path in models:
            batch = int(per.get(name, self.a.batch))
            cmd = [netc, "bench", "--device", a["bench_device"], "--reps", str(self.a.reps),
                   "--batch", str(batch)]
            if path:
                cmd += ["--model", path]
            prof = name == self.a.profile
            if prof:
                cmd.append("--profile")
            timeout = self.a.profile_timeout if prof else self.a.bench_timeout
            # netc bench times the CPU executor after the GPU path: not wanted here
            st, lines, secs = self.run(f"bench {name}", cmd, timeout,
                                       stop=lambda l: l.startswith("CPU executor"),
                                       reserve=self.a.keep_for_torch)
            b = parse_bench(lines)
            step = b.get("step")
            if st == "stopped" and step:
                st = "ok"
            elif st == "stopped":
                st = "failed (no step figure)"
            elif st == "ok" and not step:
                st = "failed (no step figure)"
            m = {"status": st, "batch": batch, "reps": self.a.reps, "seconds": secs,
                 "model": path or "models/mlp.net (built in)"}
            if b.get("gpu_unavailable"):
                m["status"] = "no adapter: " + b["gpu_unavailable"]
            if step:
                m.update(step)
            if b.get("replay"):
                m["replay"] = b["replay"]
            self.res["models"][name] = m
            if b.get("adapter") and "bench_adapter" not in a:
                a["bench_adapter"] = b["adapter"]
            if prof:
                p = b.get("profile") or {}
                p.update(model=name, batch=batch,
                         status="ok" if p.get("kernels") else
                         ("no profile (a GAN)" if "--profile: for a GAN" in "\n".join(lines) else st))
                self.res["profile"] = p
            self.save()
        self.peak()

    def dense(self):
        """The dense kernel alone: netc bench's built-in products (1024^3 and 128x128x784) and
        --gemm's, stopped after the last of them (before the step it would time next)."""
        a = self.res["adapter"]
        gemms = [g for g in self.a.gemm.split(",") if g]
        cmd = [self.exe["netc"][0], "bench", "--device", a["bench_device"], "--reps", str(self.a.reps)]
        for g in gemms:
            cmd += ["--gemm", g]
        want = 2 + len(gemms)
        seen = []

        def stop(line):
            if DENSE_RE.match(line):
                seen.append(line)
            return len(seen) >= want or line.startswith("CPU executor") or bool(STEP_RE.match(line))

        st, lines, secs = self.run("dense kernel", cmd, self.a.dense_timeout, stop=stop,
                                   reserve=self.a.keep_for_torch)
        b = parse_bench(lines)
        if st == "stopped":
            st = "ok" if len(b["dense"]) >= want else "failed (figures missing)"
        elif st == "ok" and len(b["dense"]) < want:
            st = "failed (figures missing)"
        if b.get("gpu_unavailable"):
            st = "no adapter: " + b["gpu_unavailable"]
        self.res["dense"] = b["dense"]
        self.res["dense_status"] = st
        self.res["dense_seconds"] = secs
        if b.get("adapter"):
            a["bench_adapter"] = b["adapter"]
        self.save()

    def peak(self):
        """The card's fp32 peak, for the dense kernel's share of it."""
        a = self.res["adapter"]
        name = (a.get("bench_adapter") or "") + " " + " ".join(
            d["name"] for d in a.get("devices", []) if d["type"] not in ("Cpu", "Other"))
        smi = a.get("nvidia_smi", {})
        if smi.get("status") == "ok" and isinstance(smi.get("values"), list) and smi["values"]:
            name = smi["values"][0] + " " + name
        peak, src = None, None
        tg = self.res.get("torch", {}).get("gpu") or {}
        try:
            clock = float(smi["values"][2].split()[0]) if smi.get("status") == "ok" else None
        except (KeyError, IndexError, ValueError):
            clock = None
        lanes = LANES.get(tg.get("capability", ""))
        if tg.get("multiprocessors") and lanes and clock:
            peak = tg["multiprocessors"] * lanes * 2 * clock * 1e6 / 1e12
            src = (f"{tg['multiprocessors']} SMs x {lanes} FP32 lanes x 2 x {clock:.0f} MHz "
                   f"(PyTorch's SM count, nvidia-smi's max SM clock)")
        else:
            for key, tf in PEAKS:
                if key.lower() in name.lower():
                    peak, src = tf, f"published fp32 (non-tensor) peak of the {key}"
                    break
        if peak is None:
            src = "no fp32 peak known for this adapter" + (" (a software rasteriser)" if not a.get("hardware") else "")
        a["fp32_peak_tflops"] = round(peak, 1) if peak else None
        a["fp32_peak_source"] = src
        for d in self.res["dense"]:
            d["of_fp32_peak"] = round(d["gflops"] / (peak * 1e3), 4) if peak else None
        self.save()

    def torch_peers(self):
        out = os.path.join(self.a.bin_dir, "torch-peers.json")
        if os.path.exists(out):
            os.remove(out)
        gemms = sorted({"x".join(g.split(":")[0].split("x")) for g in
                        ["1024x1024x1024", "128x128x784"] + [g for g in self.a.gemm.split(",") if g]})
        models = ",".join(m for m in self.res["models"]) or ",".join(m for m, _ in MODELS)
        cmd = [sys.executable if not self.a.python else self.a.python,
               os.path.join(ROOT, "benches", "torch_peers.py"), "--device", "cuda",
               "--models", models, "--batch", str(self.a.batch), "--reps", str(self.a.reps),
               "--model-batch", self.a.model_batch, "--gemm", ",".join(gemms), "--json", out]
        env = dict(self.env)
        env["PYTHONUNBUFFERED"] = "1"
        st, lines, secs = self.run("torch peers (CUDA eager, TF32 off and on)", cmd,
                                   self.a.torch_timeout, env=env)
        try:
            r = json.load(open(out))
        except (OSError, ValueError):
            r = {"status": "not run", "reason": "no JSON from torch_peers.py"}
        if st != "ok" and r.get("status") == "ok":
            r["status"] = f"partial ({st})"
        elif st != "ok":
            r.setdefault("reason", st)
        r["seconds"] = secs
        self.res["torch"] = r
        self.compare()
        self.save()

    def compare(self):
        """Each model's netc step against PyTorch's (medians; >1 = netc slower)."""
        t = self.res["torch"]
        cmp = {}
        for name, m in self.res["models"].items():
            row = {"netc_ms": m.get("median_ms")}
            for mode in ("fp32", "tf32"):
                p = (t.get(mode) or {}).get("models", {}).get(name, {})
                pm = p.get("median_ms")
                row[f"torch_{mode}_ms"] = pm if pm is not None else (
                    p.get("status") or t.get("status", "not run"))
                row[f"netc_over_torch_{mode}"] = round(row["netc_ms"] / pm, 2) \
                    if pm and row["netc_ms"] else None
            cmp[name] = row
        self.res["comparison"] = cmp

    def main(self):
        self.say(f"netc on a real GPU: preset {self.a.preset}, budget {self.a.budget} s, out {self.a.out}")
        ok = self.setup()
        self.save()
        if ok:
            self.adapter()
            if not self.a.skip_tests:
                self.tests()
            self.bench_models()
        self.torch_peers()
        self.peak()
        self.res["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.res["green"] = green(self.res)
        self.save()
        self.say(f"done in {time.time() - self.t0:.1f} s (budget {self.a.budget} s); "
                 f"{'green' if self.res['green'] else 'NOT green: ' + '; '.join(problems(self.res))}")
        self.say(f"wrote {self.a.out}/netc-gpu.json, netc-gpu.log, netc-gpu.md")
        return 0 if self.res["green"] else 1


# ---- parsers (netc's and libtest's text) -----------------------------------------------------

DEV_RE = re.compile(r"^(\*\s|\s\s)(.+?)\s\s\[(\w+) (\w+)\]\s\s(.*)$")


def parse_devices(lines):
    out = []
    for l in lines:
        m = DEV_RE.match(l)
        if m:
            out.append({"name": m.group(2), "backend": m.group(3), "type": m.group(4),
                        "driver": m.group(5), "auto": m.group(1).startswith("*")})
    return out


def vulkan_summary(lines):
    keep = ("apiVersion", "driverVersion", "vendorID", "deviceID", "deviceType", "deviceName",
            "driverID", "driverName", "driverInfo", "Vulkan Instance Version")
    return [l.strip() for l in lines if any(l.strip().startswith(k) for k in keep)]


TEST_RE = re.compile(r"^test (\S+) \.\.\. (ok|FAILED|ignored)")
RESULT_RE = re.compile(r"test result: (\w+)\. (\d+) passed; (\d+) failed; (\d+) ignored")


def parse_libtest(lines):
    r = {"passed": 0, "failed": 0, "ignored": 0, "failures": [], "tests": {}}
    for l in lines:
        m = TEST_RE.match(l)
        if m:
            r["tests"][m.group(1)] = m.group(2)
            if m.group(2) == "FAILED":
                r["failures"].append(m.group(1))
        m = RESULT_RE.search(l)
        if m:
            r.update(passed=int(m.group(2)), failed=int(m.group(3)), ignored=int(m.group(4)))
    if not any(RESULT_RE.search(l) for l in lines):
        # no summary line (a timeout or a crash): count what finished
        r["passed"] = sum(v == "ok" for v in r["tests"].values())
        r["failed"] = len(r["failures"])
        r["unfinished"] = True
    return r


ADAPTER_RE = re.compile(r"^GPU adapter: (.*)$")
DENSE_RE = re.compile(r"^\s+dense kernel (.+):\s+([\d.]+) ms\s+([\d.]+) GFLOP/s")
STEP_RE = re.compile(r"^\s+(.+?) (?:training step|GAN training step \(D step \+ G step\)), batch (\d+) "
                     r"\(median of (\d+)\): ([\d.]+) ms \(fastest ([\d.]+) ms; ([\d.]+) ms per step back to back\); "
                     r"([\d.]+) GFLOP/s")
GAN_STEP_RE = re.compile(r"^\s+GAN training step \(D step \+ G step\), batch (\d+) \(median of (\d+)\): "
                         r"([\d.]+) ms \(fastest ([\d.]+) ms; ([\d.]+) ms per step back to back\); ([\d.]+) GFLOP/s")
REPLAY_RE = re.compile(r"^\s+replay: (\d+) pipelines, (\d+) bind groups, (\d+) buffers, (\d+) textures "
                       r"created once; (\d+) submissions for (\d+) steps")
PROF_HEAD_RE = re.compile(r"^\s+profile of one (.+) \((.+)\):")
PROF_RE = re.compile(r"^\s+([\d.]+) ms  (.*?)\s+([A-Za-z_0-9]+\[.*\])\s*$")
PROF_TOTAL_RE = re.compile(r"^\s+([\d.]+) ms  total\s*$")


def gemm_shape(label):
    """'1024x1024 by (1024x1024)^T' -> '1024x1024x1024' (MxNxK)."""
    m = re.match(r"^\(?(\d+)x(\d+)\)?(\^T)? by \(?(\d+)x(\d+)\)?(\^T)?$", label)
    if not m:
        return label
    a1, a2, ta, b1, b2, tb = m.groups()
    mm, k = (a2, a1) if ta else (a1, a2)
    n = b1 if tb else b2
    return f"{mm}x{n}x{k}"


def parse_bench(lines):
    r = {"dense": []}
    prof = None
    for l in lines:
        if l.startswith("CPU executor"):
            break
        if l.startswith("GPU path: not available"):
            r["gpu_unavailable"] = l.split("(", 1)[-1].rstrip(")")
        m = ADAPTER_RE.match(l)
        if m:
            r["adapter"] = m.group(1)
            continue
        m = DENSE_RE.match(l)
        if m:
            r["dense"].append({"label": m.group(1).strip(), "shape": gemm_shape(m.group(1).strip()),
                               "ms": float(m.group(2)), "gflops": float(m.group(3))})
            continue
        m = GAN_STEP_RE.match(l)
        if m:
            r["step"] = {"median_ms": float(m.group(3)), "fastest_ms": float(m.group(4)),
                         "back_to_back_ms": float(m.group(5)), "gflops": float(m.group(6)), "gan": True}
            continue
        m = STEP_RE.match(l)
        if m:
            r["step"] = {"median_ms": float(m.group(4)), "fastest_ms": float(m.group(5)),
                         "back_to_back_ms": float(m.group(6)), "gflops": float(m.group(7)),
                         "network": m.group(1)}
            continue
        m = REPLAY_RE.match(l)
        if m:
            r["replay"] = dict(zip(("pipelines", "bind_groups", "buffers", "textures", "submissions",
                                    "steps"), map(int, m.groups())))
            continue
        m = PROF_HEAD_RE.match(l)
        if m:
            prof = {"what": m.group(1), "timing": m.group(2), "rows": []}
            r["profile"] = prof
            continue
        if prof is not None:
            m = PROF_TOTAL_RE.match(l)
            if m:
                prof["total_ms"] = float(m.group(1))
                continue
            m = PROF_RE.match(l)
            if m:
                prof["rows"].append({"ms": float(m.group(1)), "label": m.group(2).strip(),
                                     "kernel": m.group(3)})
    if prof is not None:
        rows = prof.pop("rows")
        total = prof.get("total_ms") or sum(x["ms"] for x in rows) or 1.0
        prof["dispatches"] = len(rows)
        prof["kernels"] = sorted(rows, key=lambda x: -x["ms"])[:12]
        kinds = {}
        for x in rows:
            k = x["kernel"].split("[")[0]
            e = kinds.setdefault(k, {"kind": k, "ms": 0.0, "dispatches": 0})
            e["ms"] += x["ms"]
            e["dispatches"] += 1
        prof["by_kind"] = sorted(({**e, "ms": round(e["ms"], 3), "share": round(e["ms"] / total, 3)}
                                  for e in kinds.values()), key=lambda e: -e["ms"])
        for x in prof["kernels"]:
            x["share"] = round(x["ms"] / total, 3)
    return r


# ---- verdict ---------------------------------------------------------------------------------

def problems(res):
    p = []
    if res["setup"].get("status") != "ok":
        p.append("setup: " + str(res["setup"].get("status")))
    for k, t in res.get("tests", {}).items():
        if t.get("status") != "ok":
            p.append(f"tests {k}: {t.get('status')}")
    if not res.get("dense") or res.get("dense_status") != "ok":
        p.append(f"dense kernel: {res.get('dense_status', 'no figures')}")
    for k, m in res.get("models", {}).items():
        if m.get("status") != "ok":
            p.append(f"bench {k}: {m.get('status')}")
    if res.get("profile", {}).get("status") != "ok":
        p.append(f"profile: {res.get('profile', {}).get('status')}")
    if res.get("torch", {}).get("status") not in ("ok", "not run"):
        p.append(f"torch: {res['torch'].get('status')}")
    return p


def green(res):
    return not problems(res)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="gpu",
                    help="defaults for the flags below: gpu (the issue's figures) or lavapipe")
    ap.add_argument("--out", default=os.environ.get("OUT") or os.path.join(ROOT, "benches", "device", "out"),
                    help="folder for netc-gpu.json, netc-gpu.log and netc-gpu.md [$OUT, else benches/device/out]")
    ap.add_argument("--carry", default=".gpu-carry", help="what build.sh wrote, relative to the checkout")
    ap.add_argument("--bin-dir", default="/tmp/netc-gpu", help="where the executables are unpacked")
    ap.add_argument("--device", help="netc's --device for the benches [a hardware adapter, else vulkan]")
    ap.add_argument("--models", help="only these models (comma-separated)")
    ap.add_argument("--python", help="the python3 that runs the PyTorch peers [this one]")
    ap.add_argument("--skip-tests", action="store_true")
    for k, v in PRESETS["gpu"].items():
        ap.add_argument("--" + k.replace("_", "-"), type=type(v), default=None,
                        help=f"[gpu: {v}; lavapipe: {PRESETS['lavapipe'][k]}]")
    a = ap.parse_args(argv)
    for k, v in PRESETS[a.preset].items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    return Run(a).main()


if __name__ == "__main__":
    sys.exit(main())
