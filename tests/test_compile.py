"""device.compile: every graph is compiled before training, so a time budget counts training only,
into one compile cache under the outputs root that the next run (a sweep's next job) reuses."""

import json

import pytest

pytestmark = pytest.mark.slow


def test_compiling_is_outside_the_time_budget_and_its_cache_is_shared(cli, monkeypatch):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)  # dlrun's own choice: under the outputs root
    run = ["experiment=smoke", "model=logistic", "device.compile=true", "trainer.max_epochs=3", "trainer.max_time=1",
           "trainer.early_stopping.enabled=false", "plots=[]", "report=false"]
    cli(*run, "hydra.run.dir=first")
    cli(*run, "hydra.run.dir=second")
    first, second = (json.loads((cli.cwd / name / "summary.json").read_text()) for name in ("first", "second"))
    for summary in (first, second):  # the budget is a second of training, the epochs take far less
        assert summary["epochs_run"] == 3 and summary["stop_reason"].startswith("max_epochs")
    assert first["timings"]["compile"] > 1  # compiling from nothing takes longer than the whole budget
    assert second["timings"]["compile"] < first["timings"]["compile"] / 2  # the first run's cache
    assert any((cli.outputs / ".cache" / "torch_compile").iterdir())
    assert "compiled in" in (cli.cwd / "first" / "run.log").read_text()
