import time, sys, gzip, struct
import numpy as np
import torch, torch.nn as nn, torch.nn.functional as F
torch.set_num_threads(2)
torch.manual_seed(0)

class LRN(nn.Module):
    # netc's lrn (alpha not divided by size) = PyTorch's with alpha * size
    def __init__(self): super().__init__(); self.l = nn.LocalResponseNorm(5, alpha=1e-4*5, beta=0.75, k=2.0)
    def forward(self, x): return self.l(x)

def alexnet():
    return nn.Sequential(
        nn.Conv2d(3, 96, 11, 4), nn.ReLU(), LRN(), nn.MaxPool2d(3, 2),
        nn.Conv2d(96, 256, 5, padding=2, groups=2), nn.ReLU(), LRN(), nn.MaxPool2d(3, 2),
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 384, 3, padding=1, groups=2), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1, groups=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Flatten(), nn.Linear(9216, 4096), nn.ReLU(), nn.Dropout(0.5),
        nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(0.5), nn.Linear(4096, 1000))

def step_times(model, opt, x, y, n):
    ts = []
    for i in range(n + 3):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward(); opt.step()
        if i >= 3: ts.append(time.perf_counter() - t0)
    ts.sort(); return ts[len(ts)//2], ts[0]

what = sys.argv[1]
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
    m = nn.Sequential(nn.Conv2d(1, 20, 5), nn.MaxPool2d(2), nn.Conv2d(20, 50, 5), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(800, 500), nn.ReLU(), nn.Linear(500, 10))
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
    G = nn.Sequential(nn.Linear(100, 6272, bias=False), nn.Unflatten(1, (128, 7, 7)), nn.BatchNorm2d(128), nn.ReLU(),
                      nn.ConvTranspose2d(128, 64, 4, 2, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                      nn.ConvTranspose2d(64, 1, 4, 2, 1), nn.Tanh())
    D = nn.Sequential(nn.Conv2d(1, 64, 4, 2, 1), nn.LeakyReLU(0.2),
                      nn.Conv2d(64, 128, 4, 2, 1, bias=False), nn.BatchNorm2d(128), nn.LeakyReLU(0.2),
                      nn.Flatten(), nn.Linear(6272, 1))
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
