"""The recipes of this round through the real `dlrun` command: policy augmentation, schedule-free
AdamW, test-time augmentation and a batch size found, together on the smoke budget; a multi-label
table trained and predicted; their mistakes refused in one line."""

import json

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_the_recipes_run_together_through_the_command(cli):
    proc = cli("experiment=smoke", "model=cnn", "regularization.augment=[standard,trivial_augment,random_erasing]",
               "optimizer=schedule_free", "trainer.tta=multicrop", "trainer.batch_size=auto",
               "trainer.effective_batch_size=128", "hydra.run.dir=run")
    out = proc.stdout + proc.stderr
    assert "trainer.batch_size=auto: 128 per batch x 1 accumulated = 128 samples per optimizer step on cpu" in out
    assert "outputs averaged over trainer.tta=multicrop's views" in out
    summary = json.loads((cli.cwd / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["data_summary"]["batches"]["size"] == 128


def test_a_multilabel_table_trains_and_predicts_through_the_command(cli):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3))
    lines = ["a,b,c,hot,cold"] + [f"{r[0]:.3f},{r[1]:.3f},{r[2]:.3f},{int(r[0] > 0)},{int(r[1] > 0.3)}" for r in x]
    (cli.cwd / "tags.csv").write_text("\n".join(lines) + "\n")
    (cli.cwd / "new.csv").write_text("a,b,c\n2.0,-1.0,0.0\n-2.0,2.0,0.0\n")
    cli("dataset=csv", "dataset.path=tags.csv", "dataset.target=[hot,cold]", "dataset.threshold=auto",
        "trainer.max_epochs=40", "hydra.run.dir=run")
    summary = json.loads((cli.cwd / "run" / "summary.json").read_text())
    assert summary["problem"] == "multilabel" and summary["test"]["f1_macro"] > 0.8
    cli("task=predict", "ckpt_path=run", "predict.input=new.csv", "hydra.run.dir=predicted")
    rows = (cli.cwd / "predicted" / "predictions.csv").read_text().splitlines()
    assert [row.split(",")[1] for row in rows[1:]] == ["hot", "cold"]


@pytest.mark.parametrize("args, said", [
    (["regularization.augment=trivial_augmnt"], "Did you mean 'trivial_augment'?"),
    (["trainer.tta=flp"], "Did you mean 'flip'?"),
    (["optimizer=schedule_free", "scheduler=cosine"], "optimizer=schedule_free needs no learning-rate schedule"),
    (["trainer.batch_size=-1"], "trainer.batch_size=-1 is out of range; it must be a count >= 1 or auto"),
])
def test_their_mistakes_are_one_line(cli, args, said):
    proc = cli("experiment=smoke", *args, "hydra.run.dir=refused", check=False)
    assert proc.returncode != 0 and said in proc.stderr and "Traceback" not in proc.stderr
    assert not (cli.cwd / "refused" / "checkpoints").exists()
