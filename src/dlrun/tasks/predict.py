"""task=predict: a trained run applied to new, unlabelled inputs (a CSV file, a folder of
images, or a .npy array; read and checked by new_inputs.py), with the preprocessing its
checkpoint recorded, into predictions.csv.
"""

import torch

from dlrun import build, registry
from dlrun.errors import DlrunError
from dlrun.results import artifacts, checkpoint
from dlrun.results.evaluation import label_list
from dlrun.results.metrics import decide
from dlrun.results.summary import Summary
from dlrun.tasks import messages, new_inputs
from dlrun.train.fit_policy import FitState


@torch.inference_mode()
def outputs(deployed, x, device, batch_size):
    """The deployed model's outputs for every row, on the CPU."""
    deployed = deployed.to(device).eval()
    return torch.cat([deployed(x[i:i + batch_size].to(device)).cpu() for i in range(0, len(x), batch_size)])


def rows(ids, out, pre, threshold=0.5, probabilities=False):
    """predictions.csv: an id, the prediction (class and confidence, values, or a multi-label row's
    labels with every label's probability)."""
    key = "file" if isinstance(ids[0], str) else "row"
    if pre["task"] == "regression":
        suffix = [""] if out.shape[1] == 1 else [f"_{j}" for j in range(out.shape[1])]
        return [{key: i, **{f"predicted{s}": float(v) for s, v in zip(suffix, values)}} for i, values in zip(ids, out)]
    names = pre["class_names"]
    pred = decide(pre["task"], out, threshold)  # the one rule evaluation decides by, too
    if pre["task"] == "multilabel":
        return [{key: i, "predicted": label_list(flags, names),
                 **{f"prob_{name}": float(p) for name, p in zip(names, probs)}} for i, flags, probs in zip(ids, pred, out)]
    table = []
    for i, c, probs in zip(ids, pred.tolist(), out):
        row = {key: i, "predicted": c, "predicted_name": names[c], "confidence": float(probs[c])}
        if probabilities:
            row.update({f"prob_{name}": float(p) for name, p in zip(names, probs)})
        table.append(row)
    return table


def task(cfg, run, device):
    """task=predict: the checkpoint's model and preprocessing on new inputs, into predictions.csv
    (a run directory's best.pt, else its last.pt)."""
    from dlrun import models
    from dlrun.results import deployment

    summary = Summary(run.root, cfg, device)
    path = checkpoint.resolve(cfg.ckpt_path, "ckpt_path", checkpoint.WEIGHTS_FIRST)
    ckpt = checkpoint.load(path, unverified=cfg.trust_unverified_ckpt)
    pre, spec = ckpt["preprocessing"], _model_spec(ckpt, path, cfg.trust_run_code)
    net = models.build({k: v for k, v in spec.items() if k not in ("input_shape", "num_outputs")},
                       spec["input_shape"], spec["num_outputs"])
    checkpoint.load_model_state(net, ckpt, path)
    warnings = []
    x, ids = new_inputs.read(cfg.predict.input, pre, lambda text: warnings.append(messages.warn(text)))
    messages.phase(cfg, f"predicting {len(ids)} input(s) from {cfg.predict.input}")
    # trainer.tta given here adds views to a model trained without them
    out = outputs(deployment.Deployed(net, {**pre, "tta": cfg.trainer.tta or pre.get("tta")}), x, device,
                  cfg.trainer.eval_batch_size)
    threshold = pre.get("threshold") or build.threshold(cfg)
    artifacts.write_csv(run.predictions, rows(ids, out, pre, threshold, cfg.probabilities))
    summary.data.update(problem=pre["task"], classes=pre["class_names"], predicted={
        "input": str(cfg.predict.input), "rows": len(ids), "checkpoint": str(path),
        "file": str(run.predictions), **({"warnings": warnings} if warnings else {})})
    return summary.finish("completed", FitState())


def _model_spec(ckpt, path, trusted):
    """The checkpoint's model, to be built by its registered name: a checkpoint is data, so an
    import path in it (`_target_`, at any depth) is followed only with trust_run_code=true."""
    spec = dict(ckpt["model_spec"])
    targets = list(registry.targets(spec))
    if targets and not trusted:
        raise DlrunError(f"{path} names code to build its model ({', '.join(targets)}). A checkpoint is read as "
                         f"data: add trust_run_code=true if you trust where it came from.")
    return spec
