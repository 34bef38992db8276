#!/usr/bin/env python3
"""The "On a real GPU" figures (docs/gpu.md) from run.py's JSON.

    python3 benches/device/render.py netc-gpu.json                 # print the markdown
    python3 benches/device/render.py netc-gpu.json --readme [PAGE]
        # replace what stands between the page's <!-- gpu-figures:begin --> and
        # <!-- gpu-figures:end --> markers; PAGE defaults to docs/gpu.md of this checkout
"""
import json
import os
import sys

BEGIN, END = "<!-- gpu-figures:begin -->", "<!-- gpu-figures:end -->"
# The page holding the section (it moved there from the README).
DEFAULT_PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "gpu.md")


def f(v, fmt="{:.3f}"):
    if v is None:
        return "not run"
    if isinstance(v, str):
        return v
    return fmt.format(v)


def torch_gemm(res, mode, shape):
    t = res.get("torch") or {}
    g = ((t.get(mode) or {}).get("gemm") or {}).get(shape)
    if not g:
        return t.get("status", "not run") if t.get("status") != "ok" else "not run"
    if "gflops" not in g:
        return g.get("status", "failed")
    return f"{g['gflops']:,.0f}"


def section(res):
    a = res.get("adapter") or {}
    out = []
    name = a.get("bench_adapter") or next((d["name"] for d in a.get("devices", []) if d.get("type") not in ("Cpu",)), None) \
        or "no adapter"
    smi = a.get("nvidia_smi") or {}
    driver = ""
    if smi.get("status") == "ok" and isinstance(smi.get("values"), list) and len(smi["values"]) > 1:
        driver = f"; {smi['values'][0]}, driver {smi['values'][1]}, max SM clock {smi['values'][2]}"
    t = res.get("torch") or {}
    tv = f"PyTorch {t['torch']} (CUDA {t.get('cuda')}, cuDNN {t.get('cudnn')}) on {t.get('gpu', {}).get('name')}" \
        if t.get("status") in ("ok",) or str(t.get("status", "")).startswith("partial") else \
        f"PyTorch: {t.get('status', 'not run')}" + (f" ({t['reason']})" if t.get("reason") else "")
    s = res.get("setup") or {}
    out.append(f"Run of {res.get('started', '?')} (commit {str(s.get('commit') or '?')[:10]}"
               f"{', with uncommitted changes' if s.get('dirty') else ''}; preset `{res.get('preset')}`, "
               f"{res.get('wall_s', '?')} s in all): {name}{driver}. {tv}.")
    out.append("")
    tests = res.get("tests") or {}
    if tests:
        parts = []
        for k, r in tests.items():
            bit = f"`{k}` {r.get('status')}"
            if "passed" in r:
                bit += f": {r['passed']} passed, {r['failed']} failed"
                if r.get("failures"):
                    bit += " (" + ", ".join(r["failures"][:6]) + ("..." if len(r["failures"]) > 6 else "") + ")"
                bit += f", {r.get('seconds', '?')} s"
            parts.append(bit)
        out.append("GPU tests with `NETC_REQUIRE_GPU=1`: " + "; ".join(parts) + ".")
        out.append("")
    peak = a.get("fp32_peak_tflops")
    src = a.get("fp32_peak_source") or "not known"
    out.append("Dense kernel (C = A B^T, the dense layer's forward layout; " +
               (f"fp32 peak {peak:.1f} TFLOP/s: {src}):" if peak else f"{src}):"))
    out.append("")
    out.append("| product | netc ms | netc GFLOP/s | share of fp32 peak | PyTorch fp32 GFLOP/s | PyTorch TF32 GFLOP/s |")
    out.append("| --- | --- | --- | --- | --- | --- |")
    for d in res.get("dense") or []:
        share = f"{d['of_fp32_peak'] * 100:.1f}%" if d.get("of_fp32_peak") is not None else "not known"
        out.append(f"| {d['shape']} | {d['ms']:.3f} | {d['gflops']:,.1f} | {share} | "
                   f"{torch_gemm(res, 'fp32', d['shape'])} | {torch_gemm(res, 'tf32', d['shape'])} |")
    if not res.get("dense"):
        out.append(f"| (none: {res.get('dense_status', 'not run')}) | | | | | |")
    out.append("")
    out.append("Training steps (median of the waited steps, ms; netc's fastest and back-to-back per step "
               "in brackets; ratio = netc / PyTorch, above 1 netc is slower):")
    out.append("")
    out.append("| model | batch | netc | PyTorch fp32 | PyTorch TF32 | ratio fp32 | ratio TF32 |")
    out.append("| --- | --- | --- | --- | --- | --- | --- |")
    cmp = res.get("comparison") or {}
    for k, m in (res.get("models") or {}).items():
        if m.get("median_ms") is not None:
            netc = f"{m['median_ms']:.3f} ({m['fastest_ms']:.3f}; {m['back_to_back_ms']:.3f})"
            if m.get("status") != "ok":
                netc += f" {m['status']}"
        else:
            netc = m.get("status", "not run")
        c = cmp.get(k, {})
        out.append(f"| {k} | {m.get('batch')} | {netc} | {f(c.get('torch_fp32_ms'))} | {f(c.get('torch_tf32_ms'))} | "
                   f"{f(c.get('netc_over_torch_fp32'), '{:.2f}')} | {f(c.get('netc_over_torch_tf32'), '{:.2f}')} |")
    out.append("")
    p = res.get("profile") or {}
    if p.get("kernels"):
        out.append(f"Profile of one {p.get('model')} training step at batch {p.get('batch')} "
                   f"({p.get('timing')}; {p.get('dispatches')} dispatches, {p.get('total_ms', 0):.3f} ms in all), "
                   f"top kernels:")
        out.append("")
        out.append("| ms | share | step | kernel |")
        out.append("| --- | --- | --- | --- |")
        for x in p["kernels"][:10]:
            out.append(f"| {x['ms']:.3f} | {x['share'] * 100:.1f}% | {x['label']} | `{x['kernel']}` |")
        out.append("")
        out.append("By kind: " + ", ".join(f"{e['kind']} {e['share'] * 100:.0f}% ({e['dispatches']})"
                                           for e in p.get("by_kind", [])[:8]) + ".")
    else:
        out.append(f"Profile: {p.get('status', 'not run')}.")
    return "\n".join(out) + "\n"


def main(argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    res = json.load(open(argv[0]))
    text = section(res)
    if len(argv) >= 2 and argv[1] == "--readme":
        path = argv[2] if len(argv) >= 3 else os.path.normpath(DEFAULT_PAGE)
        readme = open(path).read()
        if BEGIN not in readme or END not in readme:
            sys.exit(f"{path} has no {BEGIN} ... {END} markers")
        head, rest = readme.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        open(path, "w").write(head + BEGIN + "\n" + text + END + tail)
        print(f"rewrote the figures in {path}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
