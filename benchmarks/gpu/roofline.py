"""Measure the roofline the performance model assumes, on a real GPU (needs CUDA + torch).

For the GEMM shapes of one Llama-3.1-8B layer at batch sizes from 1 to 8192 tokens, in
bf16 and fp8 (e4m3, torch._scaled_mm), time the product and report achieved TFLOP/s and
the share of the time a roofline max(FLOPs / peak, bytes / bandwidth) predicts, with
the peak and bandwidth measured on the same card (large GEMM, device-to-device copy).

Run on a GPU machine: `python benchmarks/gpu/roofline.py --out results.json`.
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

SHAPES = {"qkv": (4096, 6144), "o": (4096, 4096), "gate_up": (4096, 28672), "down": (14336, 4096)}
TOKENS = (1, 8, 32, 128, 512, 2048, 8192)


def timed(fn, repeat: int = 20) -> float:
    """Median seconds of `fn` over `repeat` runs, after warm-up, timed with CUDA events."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    return statistics.median(times)


def copy_bandwidth() -> float:
    """Bytes read plus written per second by a large device-to-device copy."""
    src = torch.empty(2 * 1024**3, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    return 2 * src.numel() / timed(lambda: dst.copy_(src))


def gemm(m: int, k: int, n: int, dtype: str) -> tuple[float, float]:
    """(seconds, bytes moved) of an [m,k] x [k,n] product."""
    a = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
    if dtype == "bf16":
        t = timed(lambda: a @ b.t())
        return t, 2 * (m * k + k * n + m * n)
    a8, b8 = a.to(torch.float8_e4m3fn), b.to(torch.float8_e4m3fn)
    one = torch.tensor(1.0, device="cuda")
    t = timed(
        lambda: torch._scaled_mm(a8, b8.t(), scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
    )
    return t, m * k + k * n + 2 * m * n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="roofline.json")
    args = parser.parse_args()
    name = torch.cuda.get_device_name()
    bandwidth = copy_bandwidth()
    peaks = {}
    for dtype in ("bf16", "fp8"):
        t, _ = gemm(8192, 8192, 8192, dtype)
        peaks[dtype] = 2 * 8192**3 / t
    rows = []
    for dtype in ("bf16", "fp8"):
        for label, (k, n) in SHAPES.items():
            for m in TOKENS:
                t, moved = gemm(m, k, n, dtype)
                flops = 2 * m * k * n
                roof = max(flops / peaks[dtype], moved / bandwidth)
                rows.append(
                    {
                        "dtype": dtype,
                        "gemm": label,
                        "tokens": m,
                        "seconds": t,
                        "tflops": flops / t / 1e12,
                        "roofline_share": roof / t,
                    }
                )
    result = {
        "device": name,
        "copy_tb_s": bandwidth / 1e12,
        "gemm_8192_tflops": {k: v / 1e12 for k, v in peaks.items()},
        "rows": rows,
    }
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(
        f"{name}: copy {bandwidth / 1e12:.2f} TB/s, 8192^3 GEMM "
        + ", ".join(f"{k} {v / 1e12:.0f} TFLOP/s" for k, v in peaks.items())
    )
    print(
        f"{'dtype':5} {'gemm':8} " + " ".join(f"{m:>7}" for m in TOKENS) + "   (share of roofline)"
    )
    for dtype in ("bf16", "fp8"):
        for label in SHAPES:
            shares = [
                r["roofline_share"] for r in rows if r["dtype"] == dtype and r["gemm"] == label
            ]
            print(f"{dtype:5} {label:8} " + " ".join(f"{s:7.2f}" for s in shares))


if __name__ == "__main__":
    main()
