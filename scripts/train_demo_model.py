"""Reproduce the embedded demo model: train the tiny CNN of ``limelight.demo`` on the shapes
dataset and write ``src/limelight/demo/shapes_cnn.npz``.

    .venv/bin/python scripts/train_demo_model.py [--epochs 12] [--train 8000] [--seed 0]

Deterministic on CPU for a given seed (single-threaded torch). Prints the test accuracy.
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np
import torch

from limelight import datasets, demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--train", type=int, default=8000)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=pathlib.Path,
                        default=pathlib.Path(demo.__file__).with_name(demo.WEIGHTS_FILE))
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    train = datasets.shapes(args.train, seed=args.seed, size=demo.INPUT_SIZE)
    test = datasets.shapes(args.test, seed=args.seed + 1000, size=demo.INPUT_SIZE)
    to_tensor = lambda images: torch.from_numpy(images.transpose(0, 3, 1, 2).copy())  # noqa: E731
    x, y = to_tensor(train.images), torch.from_numpy(train.labels)

    model = demo.build_torch().train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    generator = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs):
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        for start in range(0, len(x), 64):
            batch = order[start : start + 64]
            loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss) * len(batch)
        scheduler.step()
        print(f"epoch {epoch + 1}: loss {total / len(x):.4f}", flush=True)

    model.eval()
    with torch.no_grad():
        accuracy = float((model(to_tensor(test.images)).argmax(1).numpy() == test.labels).mean())
    print(f"test accuracy: {accuracy:.4f} on {args.test} images (seed {args.seed + 1000})")
    state = {key: value.detach().numpy().astype(np.float32) for key, value in model.state_dict().items()}
    np.savez_compressed(args.out, **state)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
