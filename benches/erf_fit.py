#!/usr/bin/env python3
"""The coefficients of netc's f32 erf (runtime/src/cpu/fast_math.rs, `erf_f32`).

erf(x) = x P(x^2) / Q(x^2) with P and Q of degree 5 and Q(0) = 1, fitted on [0, 4] (beyond 4,
erf is 1 to within f32's rounding) by linearised least squares on the relative error
(Sanathanan-Koerner iteration: each round divides by the previous denominator), with Lawson's
reweighting towards the minimax error. Then the fit is evaluated as the Rust code does, in f32
with Horner's rule, and compared with float64 erf over [-6, 6] and towards 0.

    python3 benches/erf_fit.py        # needs numpy; prints the coefficients and the errors
"""
import math

import numpy as np

DEG = 5
XMAX = 4.0


def fit(rounds=60):
    x = np.linspace(0, XMAX, 40001)
    s = x * x
    f = np.array([math.erf(v) / v if v > 0 else 2 / math.sqrt(math.pi) for v in x])
    q_prev, lawson, best = np.ones_like(x), np.ones_like(x), None
    for _ in range(rounds):
        a = np.concatenate([np.vstack([s**i for i in range(DEG + 1)]).T,
                            np.vstack([-f * s**j for j in range(1, DEG + 1)]).T], axis=1)
        w = lawson / (q_prev * f)
        c, *_ = np.linalg.lstsq(a * w[:, None], f * w, rcond=None)
        p, q = c[:DEG + 1], np.concatenate([[1.0], c[DEG + 1:]])
        pv = sum(p[i] * s**i for i in range(DEG + 1))
        qv = sum(q[j] * s**j for j in range(DEG + 1))
        err = (pv / qv - f) / f
        q_prev = qv
        lawson = np.maximum(lawson * np.abs(err) / (lawson * np.abs(err)).sum(), 1e-12)
        if best is None or np.abs(err).max() < best[0]:
            best = (np.abs(err).max(), p.copy(), q.copy())
    return best


def erf_f32(xs, p, q):
    """The Rust code's arithmetic, in f32."""
    x = np.clip(xs, np.float32(-XMAX), np.float32(XMAX))
    s = (x * x).astype(np.float32)
    pf, qf = np.array(p, dtype=np.float32), np.array(q, dtype=np.float32)
    pv, qv = np.full_like(s, pf[-1]), np.full_like(s, qf[-1])
    for c in pf[-2::-1]:
        pv = (pv * s + c).astype(np.float32)
    for c in qf[-2::-1]:
        qv = (qv * s + c).astype(np.float32)
    return np.clip((x * pv / qv).astype(np.float32), np.float32(-1), np.float32(1))


def main():
    rel, p, q = fit()
    print(f"float64 fit: relative error of erf(x)/x at most {rel:.2e}")
    print("P =", [f"{v:.9g}" for v in p])
    print("Q =", [f"{v:.9g}" for v in q])
    xs = np.concatenate([np.linspace(-6, 6, 2000001),
                         np.logspace(-30, 0.6, 20001)]).astype(np.float32)
    got = erf_f32(xs, p, q).astype(np.float64)
    want = np.array([math.erf(float(v)) for v in xs])
    err = np.abs(got - want)
    small = (np.abs(xs) < 0.5) & (want != 0)
    print(f"in f32: absolute error at most {err.max():.2e} (at x = {xs[err.argmax()]:.4f}); "
          f"relative error for |x| < 0.5 at most {(err[small] / np.abs(want[small])).max():.2e}")


if __name__ == "__main__":
    main()
