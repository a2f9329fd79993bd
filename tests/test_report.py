"""Plots are real PNGs of the expected size and not blank; report.html embeds
them all and renders in a real headless browser."""

import re
import subprocess

import numpy as np
import pytest
from matplotlib.image import imread

from conftest import SMOKE, chromium, render_in_chromium, summary_of

# File name -> (width, height) in pixels for a 10-class run.
pytestmark = pytest.mark.slow

EXPECTED = {
    "curves.png": (1000, 500), "lr.png": (800, 400), "confusion.png": (900, 700), "per_class.png": (800, 600),
    "confidence.png": (800, 600), "reliability.png": (800, 600), "roc.png": (800, 600),
    "misclassified.png": (1000, 1345), "embeddings_pca.png": (800, 600), "embeddings_tsne.png": (800, 600),
    "weights.png": (1200, 600),
}
ALL_PLOTS = ("plots=[curves,lr,confusion,per_class,confidence,reliability,roc,misclassified,embeddings,embeddings_tsne,"
             "weights,regression]")


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    import os

    cwd = tmp_path_factory.mktemp("report")
    env = {**os.environ, "DLRUN_OUTPUTS": str(cwd / "outputs"), "OMP_NUM_THREADS": "1"}
    from conftest import DLRUN

    subprocess.run([str(DLRUN), *SMOKE, "model=cnn", "trainer.max_epochs=3", "scheduler=cosine", ALL_PLOTS,
                    "hydra.run.dir=run"],
                   cwd=cwd, env=env, check=True, capture_output=True)
    return cwd / "run"


def test_every_plot_is_a_non_blank_png_of_the_right_size(full_run):
    files = sorted(p.name for p in (full_run / "plots").glob("*.png"))
    assert files == sorted(EXPECTED)  # regression is skipped silently for a classification run
    for name, (width, height) in EXPECTED.items():
        image = imread(full_run / "plots" / name)
        assert image.shape[:2] == (height, width), name
        assert image[..., :3].std() > 0.02, f"{name} is blank"


def test_report_embeds_every_plot_and_the_summary(full_run):
    page = (full_run / "report.html").read_text()
    images = re.findall(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+" alt="([^"]+)"', page)
    assert sorted(images) == sorted(n[:-4].replace("_", " ") for n in EXPECTED)
    summary = summary_of(full_run)
    assert f"{summary['test']['accuracy']:.4f}" in page
    assert "Per class" in page and "http" not in page.replace("http://www.w3.org", "")


def test_report_tells_the_story_in_order(full_run):
    page = (full_run / "report.html").read_text()
    summary = summary_of(full_run)
    assert f"<title>digits / cnn · completed · {summary['started_at']}</title>" in page
    assert "<pre>dlrun experiment=smoke trainer.progress=false model=cnn trainer.max_epochs=3 scheduler=cosine plots=[" in page
    assert "max_epochs (3)" in page  # why training stopped
    order = [page.index(marker) for marker in ('alt="curves"', "<h3>Test metrics</h3>", 'alt="confusion"',
                                               'alt="misclassified"', 'alt="embeddings pca"', "<h2>Model</h2>",
                                               "<summary>Epochs (3)</summary>", "<summary>Config</summary>")]
    assert order == sorted(order)
    assert f"<td class=\"num\">{summary['model_summary']['params']}</td>" in page


@pytest.mark.skipif(chromium() is None, reason="needs chromium (.ci/run installs Debian's chromium)")
def test_report_renders_in_a_headless_browser(full_run, tmp_path):
    title, image = render_in_chromium(full_run / "report.html", tmp_path)
    assert title == f"loaded {len(EXPECTED)}/{len(EXPECTED)} width 1280/1280 cut 0"
    assert image.shape[:2] == (2400, 1280) and image[..., :3].std() > 0.05
    assert np.mean(image[..., :3] < 0.5) > 0.01  # text and plots, not an empty page
