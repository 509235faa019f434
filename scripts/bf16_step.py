"""Time one training step of a timm Swin-T in float32 and in bf16 autocast on this CPU, one
thread, and print the ratio: what ``precision = "auto"`` decides from (nationmap.devices).

    python scripts/bf16_step.py                               # this CPU as it is
    ONEDNN_MAX_CPU_ISA=AVX2 python scripts/bf16_step.py       # as a CPU without AVX512-BF16 or AMX
    ONEDNN_MAX_CPU_ISA=AVX512_CORE_BF16 python scripts/bf16_step.py   # AVX512-BF16 without AMX
"""

from __future__ import annotations

import statistics
import time

import timm
import torch

from nationmap.devices import choose_precision, probe_bf16


def step_seconds(model, x, bf16: bool, repeats: int = 4) -> float:
    """Median seconds of a forward, backward and SGD step (the first, warm-up step left out)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(x).float().sum()
        loss.backward()
        opt.step()
        opt.zero_grad()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def main() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, num_classes=9, img_size=128)
    x = torch.randn(2, 3, 128, 128)
    fp32, bf16 = step_seconds(model, x, False), step_seconds(model, x, True)
    device = probe_bf16("cpu")
    print(f"{device.describe()}; Swin-T, batch 2 at 128 px, 1 thread: float32 {fp32:.3f} s/step, "
          f"bf16 {bf16:.3f} s/step ({bf16 / fp32:.2f}x float32's); {choose_precision('auto', device).describe()}")


if __name__ == "__main__":
    main()
