"""Quick LULC recipe trials in process (no Ray): the real task, loss, optimiser, schedule and
``train_step`` on a prepared dataset held in memory, scored on its val split every few epochs
and, at the end, on the test split of a held-out dataset, with the per-pixel baseline's score
on the same patches when a baseline bundle is given.

The held-out dataset is one prepared from land and a world the trials never train on, every
pair in its test split (issue 17 used the N35E140-N35E141-N36E140-N36E141 cells of a world of
seed 7: ``nationmap data synth``, ``data catalog``, then ``data prepare --fractions 0,0,1``).
What issue 17's trials ran (1 torch thread each, two trials at a time on 2 cores):

    python scripts/recipe_trial.py no-refine --data DATASET --heldout HELDOUT --no-refine-up --epochs 100
    python scripts/recipe_trial.py refine --data DATASET --heldout HELDOUT --epochs 50

Batches are drawn at random from the whole training split each epoch (Ray Train streams shards
in its own order, so figures match the CLI's only in trend). Writes ``OUT/NAME.txt`` (one line
per epoch) and ``OUT/NAME.pt`` (the weights).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from nationmap.data.dataset import PreparedDataset
from nationmap.metrics import ConfusionMatrix, StructureMeter
from nationmap.train.config import TrainConfig
from nationmap.train.data import decoder_for, iter_batches, to_torch
from nationmap.train.optim import build_ema, build_optimizer, build_scheduler
from nationmap.train.step import Optimisation, augment, train_step
from nationmap.train.tasks import make_task


def _args():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name")
    ap.add_argument("--data", required=True, help="prepared dataset (train and val splits)")
    ap.add_argument("--heldout", help="prepared dataset of held-out land (its test split is scored at the end)")
    ap.add_argument("--baseline", help="per-pixel baseline bundle scored on the same held-out patches")
    ap.add_argument("--out", default="trials")
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--preset", default="tiny", help="model preset (nationmap.models.presets)")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--layer-decay", type=float, default=1.0)
    ap.add_argument("--no-refine-up", action="store_true")
    ap.add_argument("--no-highres", action="store_true")
    ap.add_argument("--guide", action="store_true", help="image-guided full-resolution refinement")
    ap.add_argument("--alpha-scale", type=float, default=2.25)
    ap.add_argument("--init", default="", help="pretrained encoder (pretraining run, bundle or checkpoint)")
    ap.add_argument("--precision", default="auto", help="auto (float32 on the CPU), bf16 or fp32")
    ap.add_argument("--ema-decay", type=float, default=0.0, help="moving average of the weights (0 = off)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--eval-every", type=int, default=10)
    return ap.parse_args()


def _score(predict, dataset: PreparedDataset, split: str, decoder, structure: bool = False):
    """Scores of ``predict`` on a split, and with ``structure`` its boundary F and thin-water recall."""
    cm, meter = ConfusionMatrix(9), StructureMeter(9, water_class=0)
    with torch.inference_mode():
        for b in iter_batches(dataset, split, decoder, 8):
            pred = predict(torch.from_numpy(b["x"]))
            cm.update(pred, torch.from_numpy(b["target"]))
            if structure:
                meter.update(pred.numpy(), b["target"])
    return (cm.scores(), meter.scores()) if structure else cm.scores()


def _heldout_line(name: str, scores, structure) -> str:
    return (f"{name}_miou {scores.miou:.4f} boundary_f {structure.mean_boundary_f:.3f} "
            f"thin_water {structure.thin_water_recall:.3f} "
            + " ".join(f"{c.name}={c.iou or 0:.2f}" for c in scores.classes))


def main() -> None:
    a = _args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    data = PreparedDataset(a.data)
    decoder = decoder_for(data, "lulc")
    train = list(iter_batches(data, "train", decoder, 1000))
    x, t = np.concatenate([b["x"] for b in train]), np.concatenate([b["target"] for b in train])
    steps = len(x) // a.batch
    cfg = TrainConfig(task="lulc", data=a.data, preset=a.preset, highres=not a.no_highres, refine_up=not a.no_refine_up, guide=a.guide,
                      alpha_scale=a.alpha_scale, epochs=a.epochs, batch_size=a.batch, lr=a.lr, min_lr=1e-6,
                      warmup_epochs=1, layer_decay=a.layer_decay, clip_grad=5.0, drop_path=0.0,
                      no_pretrain=not a.init, init=a.init, precision=a.precision, ema_decay=a.ema_decay)
    task = make_task(cfg, data.meta)
    model = task.build_model(data.patch_size)
    if a.init:
        task.load_init(model)
    optimizer = build_optimizer(model, cfg)
    opt = Optimisation(model, optimizer, build_scheduler(optimizer, cfg, steps), cfg.clip_grad, ema=build_ema(model, cfg))
    device, generator, rng = torch.device("cpu"), torch.Generator().manual_seed(0), np.random.default_rng(0)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    predict = lambda inp: opt.evaluated(inp).argmax(1)  # noqa: E731
    t0 = time.time()
    with open(out / f"{a.name}.txt", "w") as log:
        for epoch in range(1, a.epochs + 1):
            order, loss = rng.permutation(len(x)), 0.0
            for i in range(steps):
                idx = order[i * a.batch:(i + 1) * a.batch]
                batch = augment(to_torch({"x": x[idx], "target": t[idx]}, device), generator)
                loss += train_step(task, opt, batch, device)
            line = f"epoch {epoch} loss {loss / steps:.4f} seconds {time.time() - t0:.0f}"
            if epoch % a.eval_every == 0 or epoch == a.epochs:
                model.eval()  # the moving average, when there is one, is always in eval mode
                line += f" val_miou {_score(predict, data, 'val', decoder).miou:.4f}"
                model.train()
            print(line, file=log, flush=True)
        if a.heldout:
            model.eval()
            held = PreparedDataset(a.heldout)
            print(_heldout_line("heldout", *_score(predict, held, "test", decoder, True)), file=log, flush=True)
            if a.baseline:
                from nationmap.train.checkpoint import load_bundle

                b = load_bundle(a.baseline)
                bd = decoder_for(held, "lulc", b.normalisation)
                scores = _score(lambda inp: b.model(inp).argmax(1), held, "test", bd, True)
                print(_heldout_line("baseline_heldout", *scores), file=log, flush=True)
    torch.save(opt.evaluated.state_dict(), out / f"{a.name}.pt")


if __name__ == "__main__":
    main()
