"""PyTorch peers of netc's benchmarks.

CPU modes (two threads, as the README's "Measured here" rows): `alexnet`, `lenet DIR`,
`alexnet-synthetic BATCH EPOCHS`, `dcgan [STEPS]`.

GPU mode: `--device cuda` times the training steps that `netc bench` times (mlp, gan, lenet,
dcgan, alexnet; Adam for the classifiers as netc bench uses, the GAN optimizers of the model
files), in eager PyTorch at fp32 with TF32 off and on, plus the dense product at netc bench's
shapes, and writes one JSON (--json). Without PyTorch or without a CUDA device it writes
{"status": "not run", "reason": ...} and exits 0. See benches/device/README.md.
"""
import time, sys, gzip, struct, json

try:
    import torch, torch.nn as nn, torch.nn.functional as F
    TORCH_MISSING = None
except Exception as e:  # no PyTorch here: the CUDA mode reports "not run"
    torch = nn = F = None
    TORCH_MISSING = f"{type(e).__name__}: {e}"

def LRN():
    # netc's lrn (alpha not divided by size) = PyTorch's with alpha * size
    return nn.LocalResponseNorm(5, alpha=1e-4*5, beta=0.75, k=2.0)

def alexnet():
    return nn.Sequential(
        nn.Conv2d(3, 96, 11, 4), nn.ReLU(), LRN(), nn.MaxPool2d(3, 2),
        nn.Conv2d(96, 256, 5, padding=2, groups=2), nn.ReLU(), LRN(), nn.MaxPool2d(3, 2),
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 384, 3, padding=1, groups=2), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1, groups=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Flatten(), nn.Linear(9216, 4096), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4096, 1000))

def lenet():
    return nn.Sequential(nn.Conv2d(1, 20, 5), nn.MaxPool2d(2), nn.Conv2d(20, 50, 5), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10))

def dcgan_nets():
    # models/dcgan.net: the discriminator's final sigmoid is folded into the loss
    G = nn.Sequential(nn.Linear(100, 6272, bias=False), nn.Unflatten(1, (128, 7, 7)), nn.BatchNorm2d(128), nn.ReLU(),
                      nn.ConvTranspose2d(128, 64, 4, 2, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                      nn.ConvTranspose2d(64, 1, 4, 2, 1), nn.Tanh())
    D = nn.Sequential(nn.Conv2d(1, 64, 4, 2, 1), nn.LeakyReLU(0.2),
                      nn.Conv2d(64, 128, 4, 2, 1, bias=False), nn.BatchNorm2d(128), nn.LeakyReLU(0.2),
                      nn.Flatten(), nn.Linear(6272, 1))
    return G, D

def mlp():
    # models/mlp.net
    return nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))

def gan_nets():
    # models/gan.yaml: the discriminator's final sigmoid is folded into the loss
    G = nn.Sequential(nn.Linear(100, 256), nn.ReLU(), nn.Linear(256, 784), nn.Sigmoid())
    D = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 1))
    return G, D

def step_times(model, opt, x, y, n):
    ts = []
    for i in range(n + 3):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward(); opt.step()
        if i >= 3: ts.append(time.perf_counter() - t0)
    ts.sort(); return ts[len(ts)//2], ts[0]


# ---- GPU mode: `--device cuda` -------------------------------------------------------------

# The steps of `netc bench`: name -> (kind, builder, input shape, classes). Classifiers train
# with Adam (lr 1e-3) as netc bench's train_step does; the GANs with their model files'
# optimizers (Adam 2e-4; DCGAN with beta1 0.5).
PEERS = {
    "mlp": ("classifier", lambda: mlp(), (784,), 10),
    "gan": ("gan", lambda: gan_nets(), (784,), (0.9, 0.999)),
    "lenet": ("classifier", lambda: lenet(), (1, 28, 28), 10),
    "dcgan": ("gan", lambda: dcgan_nets(), (1, 28, 28), (0.5, 0.999)),
    "alexnet": ("classifier", lambda: alexnet(), (3, 227, 227), 1000),
}


def set_tf32(on):
    """fp32 products and convolutions with TF32 tensor cores allowed or not (the
    fp32_precision switches of PyTorch 2.9+, else the legacy allow_tf32 flags); returns the
    switches as PyTorch reports them back."""
    prec = "tf32" if on else "ieee"
    try:  # PyTorch 2.9 and later; the legacy flags are deprecated there
        torch.backends.cuda.matmul.fp32_precision = prec
        torch.backends.cudnn.conv.fp32_precision = prec
        api = "fp32_precision"
    except (AttributeError, RuntimeError, TypeError):
        torch.backends.cuda.matmul.allow_tf32 = on
        torch.backends.cudnn.allow_tf32 = on
        api = "allow_tf32"
    seen = {"api": api}
    # read back through the same API only: PyTorch 2.9+ may refuse a mix of the two
    getters = [("matmul", lambda: torch.backends.cuda.matmul.fp32_precision),
               ("conv", lambda: torch.backends.cudnn.conv.fp32_precision)] if api == "fp32_precision" else \
              [("matmul_allow_tf32", lambda: torch.backends.cuda.matmul.allow_tf32),
               ("cudnn_allow_tf32", lambda: torch.backends.cudnn.allow_tf32)]
    for name, get in getters:
        try:
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                seen[name] = get()
        except Exception:
            pass
    return seen


def timed(step, reps, sync):
    """netc bench's protocol: 3 warm-up steps, `reps` steps each followed by a wait (median and
    fastest), then `reps` steps back to back with one wait at the end (mean)."""
    times = []
    for i in range(reps + 3):
        t0 = time.perf_counter()
        step()
        sync()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(reps):
        step()
    sync()
    b2b = (time.perf_counter() - t0) / reps
    times.sort()
    return {"median_ms": times[len(times) // 2] * 1e3, "fastest_ms": times[0] * 1e3,
            "back_to_back_ms": b2b * 1e3, "reps": reps}


def peer_step(name, batch, dev):
    """One training step of the named peer as a closure. Each step uploads its batch from
    host memory, as netc's step writes its inputs."""
    kind, build, shape, extra = PEERS[name]
    g = torch.Generator().manual_seed(2)
    if kind == "classifier":
        m = build().to(dev).train()
        opt = torch.optim.Adam(m.parameters(), 1e-3, betas=(0.9, 0.999), eps=1e-8)
        xh = torch.rand((batch,) + shape, generator=g)
        yh = torch.arange(batch) % extra

        def step():
            x, y = xh.to(dev), yh.to(dev)
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(m(x), y).backward()
            opt.step()
        return step
    G, D = build()
    G, D = G.to(dev).train(), D.to(dev).train()
    og = torch.optim.Adam(G.parameters(), 2e-4, betas=extra)
    od = torch.optim.Adam(D.parameters(), 2e-4, betas=extra)
    real_h = torch.rand((batch,) + shape, generator=g)
    z_h = torch.rand((batch, 100), generator=g) * 2 - 1
    ones = torch.ones(batch, 1, device=dev)
    zeros = torch.zeros(batch, 1, device=dev)

    def step():
        # D on a real and a fake batch (separate forwards, as PyTorch's DCGAN example), then G
        # with the non-saturating loss: netc's d_step and g_step
        real, z = real_h.to(dev), z_h.to(dev)
        od.zero_grad(set_to_none=True)
        F.binary_cross_entropy_with_logits(D(real), ones).backward()
        F.binary_cross_entropy_with_logits(D(G(z).detach()), zeros).backward()
        od.step()
        og.zero_grad(set_to_none=True)
        F.binary_cross_entropy_with_logits(D(G(z)), ones).backward()
        og.step()
    return step


def gemm_figure(m, n, k, reps, dev, sync):
    """C = A B^T (netc bench's dense forward layout), median of `reps` after 3 warm-ups."""
    g = torch.Generator().manual_seed(1)
    a = (torch.rand(m, k, generator=g) * 2 - 1).to(dev)
    b = (torch.rand(n, k, generator=g) * 2 - 1).to(dev)
    times = []
    for i in range(reps + 3):
        t0 = time.perf_counter()
        c = a @ b.t()
        sync()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    del c
    times.sort()
    s = times[len(times) // 2]
    return {"ms": s * 1e3, "gflops": 2.0 * m * n * k / s / 1e9, "reps": reps}


def device_main(argv):
    import argparse
    ap = argparse.ArgumentParser(prog="torch_peers.py --device",
                                 description="PyTorch eager peers of netc bench's steps on one device")
    ap.add_argument("--device", required=True, help="cuda (or cpu, to try the code path)")
    ap.add_argument("--models", default=",".join(PEERS), help="comma-separated, of " + ",".join(PEERS))
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--model-batch", default="", help="per-model batch, e.g. alexnet=8,dcgan=64")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--gemm", default="1024x1024x1024,4096x4096x4096", help="MxNxK,... (C = A B^T)")
    ap.add_argument("--gemm-reps", type=int, default=20)
    ap.add_argument("--tf32", choices=["both", "off", "on"], default="both")
    ap.add_argument("--json", help="write the figures here (rewritten after every figure)")
    a = ap.parse_args(argv)
    res = {"status": "not run", "device": a.device}

    def save():
        text = json.dumps(res, indent=1)
        if a.json:
            with open(a.json + ".tmp", "w") as f:
                f.write(text)
            import os
            os.replace(a.json + ".tmp", a.json)
        return text

    if torch is None:
        res["reason"] = f"PyTorch is not installed ({TORCH_MISSING})"
    elif a.device == "cuda" and not torch.cuda.is_available():
        res["reason"] = f"no CUDA device (torch {torch.__version__}, built for CUDA {torch.version.cuda})"
    if "reason" in res:
        print(f"torch peers: not run: {res['reason']}", file=sys.stderr)
        text = save()
        if not a.json:
            print(text)
        return 0
    dev = torch.device(a.device)
    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    res.update(status="ok", torch=torch.__version__, cuda=torch.version.cuda,
               cudnn=torch.backends.cudnn.version() if cuda else None)
    if cuda:
        p = torch.cuda.get_device_properties(dev)
        res["gpu"] = {"name": p.name, "multiprocessors": p.multi_processor_count,
                      "capability": f"{p.major}.{p.minor}", "memory_gib": round(p.total_memory / 2**30, 1)}
    torch.manual_seed(0)
    per = dict(kv.split("=") for kv in a.model_batch.split(",") if kv)
    modes = {"both": [("fp32", False), ("tf32", True)], "off": [("fp32", False)], "on": [("tf32", True)]}[a.tf32]
    for mode, on in modes:
        out = res[mode] = {"settings": set_tf32(on) if cuda else {"api": "cpu"}, "gemm": {}, "models": {}}
        if not cuda and on:
            out["settings"]["note"] = "no TF32 on the CPU"
        for spec in [s for s in a.gemm.split(",") if s]:
            m, n, k = (int(v) for v in spec.split("x"))
            try:
                out["gemm"][spec] = gemm_figure(m, n, k, a.gemm_reps, dev, sync)
                f = out["gemm"][spec]
                print(f"torch {mode} dense {spec}: {f['ms']:.3f} ms {f['gflops']:.0f} GFLOP/s", file=sys.stderr)
            except Exception as e:
                out["gemm"][spec] = {"status": f"failed: {type(e).__name__}: {e}"}
            save()
        for name in [s for s in a.models.split(",") if s]:
            if name not in PEERS:
                out["models"][name] = {"status": "no peer"}
                continue
            batch = int(per.get(name, a.batch))
            t0 = time.perf_counter()
            try:
                r = timed(peer_step(name, batch, dev), a.reps, sync)
                r.update(status="ok", batch=batch, seconds=round(time.perf_counter() - t0, 2))
                print(f"torch {mode} {name} batch {batch}: median {r['median_ms']:.3f} ms, fastest "
                      f"{r['fastest_ms']:.3f} ms, {r['back_to_back_ms']:.3f} ms back to back", file=sys.stderr)
            except Exception as e:
                r = {"status": f"failed: {type(e).__name__}: {e}", "batch": batch}
                print(f"torch {mode} {name}: {r['status']}", file=sys.stderr)
            out["models"][name] = r
            if cuda:
                torch.cuda.empty_cache()
            save()
    text = save()
    if not a.json:
        print(text)
    return 0


if any(x == "--device" or x.startswith("--device=") for x in sys.argv[1:]):
    sys.exit(device_main(sys.argv[1:]))
if len(sys.argv) < 2:
    sys.exit(__doc__)

what = sys.argv[1]
if torch is None:
  sys.exit(f"torch_peers.py {what}: PyTorch is not installed ({TORCH_MISSING})")
import numpy as np
torch.set_num_threads(2)
torch.manual_seed(0)
if what == "alexnet":
    m = alexnet(); x = torch.rand(8, 3, 227, 227); y = torch.randint(0, 1000, (8,))
    for name, opt in [("adam", torch.optim.Adam(m.parameters(), 1e-4)), ("sgd", torch.optim.SGD(m.parameters(), 0.01, momentum=0.9, weight_decay=5e-4))]:
        med, fast = step_times(m, opt, x, y, 5)
        print(f"torch alexnet batch 8 {name}: median {med*1e3:.1f} ms fastest {fast*1e3:.1f} ms")
elif what == "lenet":
    d = sys.argv[2]
    with gzip.open(f"{d}/train-images-idx3-ubyte.gz") as f: X = np.frombuffer(f.read()[16:], np.uint8).reshape(-1, 1, 28, 28)
    with gzip.open(f"{d}/train-labels-idx1-ubyte.gz") as f: Y = np.frombuffer(f.read()[8:], np.uint8)
    X = torch.from_numpy(X.astype(np.float32) / 255.0); Y = torch.from_numpy(Y.astype(np.int64))
    m = lenet()
    opt = torch.optim.SGD(m.parameters(), 0.01, momentum=0.9, weight_decay=5e-4)
    perm = torch.randperm(60000)
    t0 = time.perf_counter()
    for b in range(937):
        idx = perm[b*64:(b+1)*64]
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(m(X[idx]), Y[idx]); loss.backward(); opt.step()
    train_s = time.perf_counter() - t0
    # the test pass netc's epoch line includes
    with gzip.open(f"{d}/t10k-images-idx3-ubyte.gz") as f: TX = np.frombuffer(f.read()[16:], np.uint8).reshape(-1, 1, 28, 28)
    with gzip.open(f"{d}/t10k-labels-idx1-ubyte.gz") as f: TY = np.frombuffer(f.read()[8:], np.uint8)
    TX = torch.from_numpy(TX.astype(np.float32) / 255.0); TY = torch.from_numpy(TY.astype(np.int64))
    with torch.no_grad():
        correct = sum((m(TX[i:i+64]).argmax(1) == TY[i:i+64]).sum().item() for i in range(0, 10000, 64))
    print(f"torch lenet epoch (937 steps of 64, SGD): {train_s:.2f} s train, {time.perf_counter()-t0:.2f} s with the test pass, test acc {correct/100:.2f}%")
elif what == "alexnet-synthetic":
    # models/alexnet.net's training section on netc's kind of synthetic data (10 noisy class
    # prototypes), the paper's initialisation; argv: batch epochs
    batch, epochs = int(sys.argv[2]), int(sys.argv[3])
    m = alexnet()
    convs = [l for l in m if isinstance(l, (nn.Conv2d, nn.Linear))]
    for i, l in enumerate(convs):
        nn.init.normal_(l.weight, 0.0, 0.01)
        nn.init.constant_(l.bias, 1.0 if i in (1, 3, 4, 5, 6) else 0.0)
    protos = torch.rand(10, 3, 227, 227)
    n = 4 * batch
    Y = torch.arange(n) % 10
    X = 0.5 * protos[Y] + 0.5 * torch.rand(n, 3, 227, 227)
    opt = torch.optim.SGD(m.parameters(), 0.01, momentum=0.9, weight_decay=5e-4)
    for e in range(epochs):
        perm = torch.randperm(n); tot = 0.0
        for b in range(n // batch):
            idx = perm[b*batch:(b+1)*batch]
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(m(X[idx]), Y[idx]); loss.backward(); opt.step(); tot += loss.item()
        print(f"torch alexnet synthetic epoch {e+1}: train loss {tot/(n//batch):.4f}")
elif what == "dcgan":
    # models/dcgan.net's networks and recipe: one training iteration = a D step on a real and a
    # fake batch (separate forwards, as PyTorch's DCGAN example) and a G step, batch 128,
    # Adam(2e-4, betas (0.5, 0.999)). argv: [steps]
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    G, D = dcgan_nets()
    og = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    od = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    b = 128
    real = torch.rand(b, 1, 28, 28) * 2 - 1
    ones, zeros = torch.ones(b, 1), torch.zeros(b, 1)
    ts = []
    for i in range(steps + 3):
        t0 = time.perf_counter()
        z = torch.rand(b, 100) * 2 - 1
        od.zero_grad(set_to_none=True)
        F.binary_cross_entropy_with_logits(D(real), ones).backward()
        fake = G(z)
        F.binary_cross_entropy_with_logits(D(fake.detach()), zeros).backward()
        od.step()
        og.zero_grad(set_to_none=True)
        F.binary_cross_entropy_with_logits(D(G(torch.rand(b, 100) * 2 - 1)), ones).backward()
        og.step()
        if i >= 3: ts.append(time.perf_counter() - t0)
    ts.sort()
    print(f"torch dcgan step (D + G), batch {b}: median {ts[len(ts)//2]*1e3:.1f} ms fastest {ts[0]*1e3:.1f} ms")
