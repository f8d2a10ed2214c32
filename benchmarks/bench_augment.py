"""What augmenting a training batch costs, against an unaugmented training step.

    python benchmarks/bench_augment.py [--arch efficientnet_b0] [--image-size 224] [--batch-size 64]

:class:`edgekd.data.augment.Augmenter` transforms every image on its own, seeded from
``(seed, epoch, index)``, so the pixels do not depend on the batch (see its module). Printed, as
medians over ``--repeats`` runs: milliseconds per batch of a training step without augmentation
(forward, backward, fused AdamW, channels-last, fp32, as the loop runs it here on the CPU); of
each augmentation setting applied per image, and its ratio to the step; and, for the per-image
overhead, of the same torchvision pipeline called once on the whole batch (ONE random draw for
all images, which is why the loop does not do that).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from _results import write_result

from edgekd.data.augment import AugmentConfig, Augmenter
from edgekd.models.tensors import to_input

SETTINGS = {
    "flip": {"crop_scale": None},
    "crop + flip": {},
    "crop + flip + randaugment (2 ops, magnitude 9)": {"policy": "randaugment"},
    "crop + flip + trivialaugment": {"policy": "trivialaugment"},
}


def _step_ms(arch: str, images: np.ndarray, steps: int) -> float:
    import timm

    torch.manual_seed(0)
    model = timm.create_model(arch, num_classes=4).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    labels = torch.randint(0, 4, (len(images),))
    times = []
    for i in range(steps + 1):  # the first step warms up oneDNN
        started = time.perf_counter()
        x = to_input(images, (0.5,) * 3, (0.25,) * 3)
        loss = torch.nn.functional.cross_entropy(model(x), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if i:
            times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def _augment_ms(augment: Augmenter, images: np.ndarray, epochs: int) -> tuple[float, float]:
    """Per image (the loop's way) and, for comparison, once on the batch tensor."""
    indices = np.arange(len(images))
    per_image, batched = [], []
    pipeline = augment.pipeline(images.shape[1:3])
    tensor = torch.from_numpy(images).permute(0, 3, 1, 2)
    for epoch in range(epochs):
        started = time.perf_counter()
        augment(images, indices, epoch=epoch)
        per_image.append(time.perf_counter() - started)
        started = time.perf_counter()
        pipeline(tensor)
        batched.append(time.perf_counter() - started)
    return statistics.median(per_image) * 1000, statistics.median(batched) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="efficientnet_b0")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3, help="training steps timed per repeat")
    parser.add_argument("--repeats", type=int, default=5, help="augmented batches per setting")
    args = parser.parse_args()

    images = np.random.default_rng(0).integers(
        0, 256, (args.batch_size, args.image_size, args.image_size, 3), dtype=np.uint8
    )
    step = _step_ms(args.arch, images, args.steps)
    print(
        f"{args.arch}, batch {args.batch_size} at {args.image_size} px, "
        f"{torch.get_num_threads()} threads; medians"
    )
    print(f"training step without augmentation: {step:8.1f} ms per batch")
    width = max(len(name) for name in SETTINGS)
    print(f"{'augmentation':<{width}}  per image (used)   vs step   once on the batch")
    rows = []
    for name, settings in SETTINGS.items():
        augment = Augmenter(AugmentConfig(enabled=True, **settings), seed=0)
        augment(images[:2], np.arange(2), epoch=0)  # warm up
        per_image, batched = _augment_ms(augment, images, args.repeats)
        print(f"{name:<{width}}  {per_image:8.1f} ms       x{per_image / step:6.3f}   {batched:8.1f} ms")
        rows.append(
            {
                "augmentation": name,
                "per_image_ms": round(per_image, 2),
                "per_image_ms_per_image": round(per_image / args.batch_size, 3),
                "vs_step": round(per_image / step, 4),
                "once_on_batch_ms": round(batched, 2),
            }
        )
    path = write_result(
        "augment",
        {
            "arch": args.arch,
            "image_size": args.image_size,
            "batch_size": args.batch_size,
            "threads": torch.get_num_threads(),
            "step_ms": round(step, 2),
            "rows": rows,
        },
    )
    print(f"result: {path}")


if __name__ == "__main__":
    main()
