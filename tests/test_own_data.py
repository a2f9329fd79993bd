"""A user's own data and models: inputs of any numeric dtype are converted once, and every plot
that does not apply is named with why."""

import numpy as np

import dlrun
from dlrun.data import DATASETS, Data

QUIET = ["trainer.progress=false", "show_config=none", "trainer.max_epochs=1"]


@DATASETS.register("test_float64_signals")
def _float64_signals(n=300):
    """What NumPy gives by default: float64 features (and int64 labels)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 40))
    return Data(x=x, y=(x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0), standardize=True)


@DATASETS.register("test_integer_features")
def _integer_features(n=300):
    x = np.random.default_rng(1).integers(0, 10, size=(n, 5))
    return Data(x=x, y=(x[:, 0] > 4).astype(np.int64) + (x[:, 1] > 4), standardize=True)


def test_float64_and_integer_features_train_and_the_dtype_is_recorded(tmp_path):
    for name, dtype in (("test_float64_signals", "float64"), ("test_integer_features", "int64")):
        summary = dlrun.run([*QUIET, f"dataset.name={name}", "plots=[]", "report=false"], run_dir=tmp_path / name)
        assert summary["status"] == "completed" and summary["data_summary"]["source_dtype"] == dtype


def test_skipped_plots_are_named_with_why(tmp_path):
    summary = dlrun.run([*QUIET, "dataset=iris", "plots=[curves,misclassified,filters,pr_curve,regression]"],
                        run_dir=tmp_path / "run")
    skipped = summary["plots_skipped"]
    assert set(skipped) == {"misclassified", "filters", "pr_curve", "regression"}
    assert skipped["pr_curve"] == "drawn for binary tasks only" and "convolution" in skipped["filters"]
    assert "plot filters skipped: drawn for models with a convolution only" in (tmp_path / "run" / "run.log").read_text()
    assert "Plots not drawn (4)" in (tmp_path / "run" / "report.html").read_text()
    assert (tmp_path / "run" / "plots" / "curves.png").is_file()
    summary = dlrun.run([*QUIET, "split.test=0", "plots=[curves,confusion]", "report=false"], run_dir=tmp_path / "two")
    assert summary["plots_skipped"] == {"confusion": "needs a test split (split.test=0 leaves none)"}
