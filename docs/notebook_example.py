"""dlrun step by step from Python, as in a notebook (the tests run this file).

Each block is what one `dlrun` run does in one go: build a dataset and a model
by name, train with early stopping and checkpoints, evaluate to a per-sample
and a per-class table, and draw plots inline (each plot returns a matplotlib
Figure; it is saved only when asked).

    python docs/notebook_example.py [OUTPUT_DIR]
"""

import sys
import tempfile
from pathlib import Path

import torch
from omegaconf import OmegaConf

import dlrun
from dlrun import build
from dlrun.results import checkpoint, plots
from dlrun.results.evaluation import evaluate
from dlrun.stopping import Stop
from dlrun.train.fit_policy import FitState

out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="dlrun-notebook-"))

# 1. The whole run in one call: the same as `dlrun model=cnn trainer.max_epochs=5` in a shell.
summary = dlrun.run(["model=cnn", "trainer.max_epochs=5", "trainer.progress=false", "plots=[]"],
                    run_dir=out / "one_call")
print("one call:", summary["status"], "test accuracy", round(summary["test"]["accuracy"], 4))

# 2. Step by step. A config composed exactly as the command would, then its parts.
cfg = dlrun.compose(["model=mlp", "model.hidden_sizes=[128]", "trainer.max_epochs=10", "device=cpu"])
build.load_components(cfg)
torch.manual_seed(cfg.seed)
data = build.dataset(cfg)                                   # digits, split 70/15/15, stratified
print("classes:", data.class_names, "train/val/test:", len(data.train), len(data.val), len(data.test))
model = build.model(cfg, data)                              # or dlrun.models.build({"name": "mlp"}, shape, n)
loop = build.loop(cfg, data, model, torch.device("cpu"))

# 3. Train with early stopping; the loop hands its `best` and `last` checkpoints to `save`.
def save(name, state):
    checkpoint.save(out / "steps" / f"{name}.pt", state)


state = loop.fit(FitState(), save, Stop())
print(f"trained {state.epoch} epochs; best {cfg.trainer.monitor} {state.best_value:.4f} at epoch {state.best_epoch}")

# 4. Evaluate: per-sample predictions, metrics and the per-class table.
result = evaluate(loop, build.test_batches(cfg, data, torch.device("cpu")), data)
print("test accuracy", round(result.metrics["accuracy"], 4), "macro F1", round(result.metrics["f1_macro"], 4))
for row in result.per_class[:3]:
    print("  ", row["class"], "accuracy", round(row["accuracy"], 3), "support", row["support"])

# 5. Plots: Figures to show inline; save the ones you want.
figures = {
    "curves": plots.curves(state.history, cfg.trainer.monitor, state.best_epoch),
    "confusion": plots.confusion(result.metrics["confusion_matrix"], data.class_names),
    "embeddings_pca": plots.embedding(result.embeddings.numpy(), result.predictions.true, data.class_names, "pca"),
}
for name, figure in figures.items():
    plots.save(figure, out / "steps" / f"{name}.png")
print("saved", sorted(p.name for p in (out / "steps").glob("*.png")), "in", out / "steps")
print(OmegaConf.to_yaml(cfg.model))
