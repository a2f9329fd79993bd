"""Correctness of individual components, called directly with plain arguments."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from dlrun.api import compose
from dlrun.data import DATASETS, Data, prepare
from dlrun.data.base import Part
from dlrun.data.batches import Augmentation, DeviceTransform, TensorBatches, augment_images
from dlrun.data.split import split_indices
from dlrun.errors import ConfigError
from dlrun.models import MODELS
from dlrun.models import build as build_model
from dlrun.models.base import make_activation
from dlrun.results import metrics
from dlrun.train import loss, optimizer, scheduler
from dlrun.train.regularization import l1_penalty, penalized_weights

SPLIT = OmegaConf.create({"strategy": "stratified", "val": 0.2, "test": 0.2})


def test_focal_with_gamma_zero_and_no_alpha_is_cross_entropy():
    logits, target = torch.randn(32, 5), torch.randint(0, 5, (32,))
    assert torch.allclose(loss.FocalLoss(gamma=0.0)(logits, target), F.cross_entropy(logits, target), atol=1e-6)
    blogits, btarget = torch.randn(32, 1), torch.randint(0, 2, (32,))
    assert torch.allclose(loss.FocalLoss(gamma=0.0, binary=True)(blogits, btarget),
                          F.binary_cross_entropy_with_logits(blogits.squeeze(1), btarget.float()), atol=1e-6)


def test_focal_takes_class_weights_as_alpha():
    y = torch.tensor([0, 0, 0, 1])
    multi = loss.build({"name": "focal", "gamma": 0.0, "class_weights": "balanced"}, "multiclass", y, 2)
    assert torch.allclose(multi.alpha, loss.balanced_class_weights(y, 2))
    binary = loss.build({"name": "focal", "class_weights": "balanced"}, "binary", y, 2)
    assert binary.alpha.item() == pytest.approx(0.75)


def test_focal_down_weights_easy_examples():
    easy = torch.tensor([[8.0, 0.0]]), torch.tensor([0])
    ce, focal = F.cross_entropy(*easy), loss.FocalLoss(gamma=2.0)(*easy)
    assert focal < ce * 1e-3


def test_l1_term_is_lambda_times_sum_of_absolute_weights():
    model = build_model({"name": "mlp", "hidden_sizes": [8]}, (4,), 3)
    weights = penalized_weights(model)
    expected = sum(p.abs().sum() for n, p in model.named_parameters() if n.endswith("weight") and p.ndim > 1)
    assert len(weights) == 2
    assert torch.allclose(l1_penalty(weights), expected)


def test_balanced_class_weights_are_inverse_frequency():
    y = torch.tensor([0] * 6 + [1] * 3 + [2] * 1)
    w = loss.balanced_class_weights(y, 3)
    assert torch.allclose(w, torch.tensor([10 / (3 * 6), 10 / (3 * 3), 10 / (3 * 1)]))
    assert loss.class_weights([1, 2, 3], y, 3).tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(ConfigError, match="2 entries but the dataset has 3 classes"):
        loss.class_weights([1, 2], y, 3)


def test_mse_and_kl_div_on_probabilities_for_classification():
    logits, target = torch.randn(8, 4, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 3] * 2)
    kl = loss.build({"name": "kl_div"}, "multiclass", target, 4)
    assert kl(logits, target).item() == pytest.approx(F.cross_entropy(logits, target).item(), rel=1e-6)
    mse = loss.build({"name": "mse"}, "multiclass", target, 4)
    expected = ((logits.softmax(1) - F.one_hot(target, 4).float()) ** 2).mean()
    assert mse(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)
    z, y = torch.randn(6, 1, generator=torch.Generator().manual_seed(1)), torch.tensor([0, 1, 1, 0, 1, 0])
    p = torch.sigmoid(z.view(-1))
    binary = loss.build({"name": "mse"}, "binary", y, 2)
    assert binary(z, y).item() == pytest.approx((((p - y) ** 2).sum() * 2 / 12).item(), rel=1e-5)  # both columns
    assert isinstance(loss.build({"name": "mse"}, "regression", torch.zeros(4, 1), 0), torch.nn.MSELoss)
    with pytest.raises(ConfigError, match="loss=kl_div does not fit this dataset's task 'regression'"):
        loss.build({"name": "kl_div"}, "regression", torch.zeros(4, 1), 0)


def test_loss_must_fit_the_task():
    with pytest.raises(ConfigError, match="does not fit this dataset's task 'regression'"):
        loss.build({"name": "cross_entropy"}, "regression", torch.zeros(4, 1), 0)
    assert isinstance(loss.build({"name": "auto"}, "binary", torch.tensor([0, 1]), 2), loss.BinaryLoss)
    weighted = loss.build({"name": "bce_with_logits", "pos_weight": None, "class_weights": "balanced"}, "binary",
                          torch.tensor([0, 0, 0, 1]), 2)
    assert weighted.pos_weight.item() == pytest.approx(3.0)


def test_stratified_split_keeps_class_proportions_within_one_sample():
    y = np.array([0] * 400 + [1] * 300 + [2] * 150 + [3] * 100 + [4] * 50)
    train, val, test = split_indices(y, val=0.15, test=0.15, stratified=True, seed=3)
    assert len(set(train) | set(val) | set(test)) == len(y) and not set(train) & set(val)
    for part in (train, val, test):
        for c, count in zip(*np.unique(y, return_counts=True)):
            assert abs((y[part] == c).sum() - count * len(part) / len(y)) <= 1
    again = split_indices(y, val=0.15, test=0.15, stratified=True, seed=3)
    assert all((a == b).all() for a, b in zip((train, val, test), again))


def test_kfold_validation_parts_cover_the_training_rows_once():
    y = np.repeat(np.arange(3), 30)
    vals = [split_indices(y, 0.2, 0.2, True, 0, cv_fold=(5, i, True))[1] for i in range(5)]
    joined = np.concatenate(vals)
    assert len(joined) == len(set(joined)) == 72


def test_csv_scaler_uses_training_rows_only(tmp_path):
    rows = ["a,b,label"] + [f"{i},{i % 7},{'yes' if i % 2 else 'no'}" for i in range(100)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    data = DATASETS.build({"name": "csv", "path": str(tmp_path / "d.csv"), "target": "label"})
    assert data.task == "binary" and data.class_names == ["no", "yes"]
    prepared = prepare(data, SPLIT, seed=0)
    raw = torch.as_tensor(data.x)[torch.from_numpy(prepared.train.rows)]
    assert torch.allclose(prepared.extra["feature_mean"], raw.mean(0))
    assert torch.allclose(prepared.train.x.mean(0), torch.zeros(2), atol=1e-5)
    assert not torch.allclose(prepared.test.x.mean(0), torch.zeros(2), atol=1e-3)


def test_synthetic_imbalanced_follows_its_weights():
    data = DATASETS.build({"name": "synthetic", "n_samples": 2000, "n_classes": 5,
                           "weights": [0.4, 0.3, 0.15, 0.1, 0.05]})
    counts = np.bincount(data.y) / len(data.y)
    assert np.allclose(counts, [0.4, 0.3, 0.15, 0.1, 0.05], atol=0.02)


def test_synthetic_imbalanced_is_the_metrics_tutorials_data_exactly():
    from sklearn.datasets import make_classification

    from dlrun.build import plain
    from dlrun.config.composition import compose

    data = DATASETS.build(plain(compose(["dataset=synthetic_imbalanced"]).dataset))
    x, y = make_classification(n_samples=5000, n_features=20, n_informative=10, n_redundant=5, n_classes=5,
                               n_clusters_per_class=2, weights=[0.4, 0.3, 0.15, 0.1, 0.05], class_sep=1.5,
                               random_state=42)
    assert np.array_equal(data.x, x.astype(np.float32)) and np.array_equal(data.y, y)
    assert data.class_names == ["cat", "dog", "bird", "cow", "lynx"]


def test_frozen_backbone_receives_no_gradient():
    model = build_model({"name": "resnet18", "freeze_backbone": True}, (3, 32, 32), 4)
    model(torch.randn(2, 3, 32, 32)).sum().backward()
    assert all(p.grad is None for p in model.features.parameters())
    assert all(p.grad is not None for p in model.head.parameters())
    assert len(optimizer.param_groups(model, 0.0)[0]["params"]) == 2


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 5, 7)])
def test_cnn_adapts_to_channels_and_image_size(shape):
    model = build_model({"name": "cnn"}, shape, 10)
    assert model(torch.randn(2, *shape)).shape == (2, 10)
    assert model.embed(torch.randn(2, *shape)).shape == (2, 128)


@pytest.mark.parametrize("scheme", ["kaiming", "xavier", "orthogonal", "uniform", "normal", "zeros"])
def test_initialisation_schemes_zero_the_biases(scheme):
    model = build_model({"name": "mlp", "init": scheme}, (6,), 2)
    assert all((m.bias == 0).all() for m in model.modules() if isinstance(m, torch.nn.Linear))


def test_uniform_and_normal_follow_their_scale():
    torch.manual_seed(0)
    wide = build_model({"name": "mlp", "hidden_sizes": [400], "init": "uniform"}, (100,), 2).features[1].weight
    assert wide.abs().max() <= 0.1 and wide.abs().max() > 0.099  # 1/sqrt(fan_in=100)
    scaled = build_model({"name": "mlp", "hidden_sizes": [400], "init": "uniform", "init_scale": 0.5},
                         (100,), 2).features[1].weight
    assert 0.49 < scaled.abs().max() <= 0.5
    normal = build_model({"name": "mlp", "hidden_sizes": [400], "init": "normal", "init_scale": 0.02},
                         (100,), 2).features[1].weight
    assert abs(normal.std().item() - 0.02) < 0.001 and abs(normal.mean().item()) < 0.001


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "prelu", "elu", "gelu", "silu", "tanh", "sigmoid", "identity"])
def test_every_activation_is_used_by_mlp_and_cnn(name):
    kind = type(make_activation(name))
    mlp = build_model({"name": "mlp", "activation": name, "hidden_sizes": [4, 4]}, (3,), 2)
    cnn = build_model({"name": "cnn", "activation": name, "channels": [2]}, (1, 8, 8), 2)
    assert sum(isinstance(m, kind) for m in mlp.modules()) == 2
    assert sum(isinstance(m, kind) for m in cnn.modules()) == 2  # the block and the hidden layer


def test_identity_activation_makes_the_mlp_one_linear_map():
    mlp = build_model({"name": "mlp", "activation": "identity", "hidden_sizes": [5, 4], "dropout": 0.0}, (3,), 2)
    x = torch.randn(10, 3)
    a, b = mlp(x), mlp(2 * x) - mlp(torch.zeros(1, 3))
    assert torch.allclose(b, 2 * (a - mlp(torch.zeros(1, 3))), atol=1e-5)  # affine: f(2x) - f(0) = 2 (f(x) - f(0))


def test_leaky_slope_reaches_the_layer():
    mlp = build_model({"name": "mlp", "activation": "leaky_relu", "negative_slope": 0.3, "hidden_sizes": [4]}, (3,), 2)
    assert [m.negative_slope for m in mlp.modules() if isinstance(m, torch.nn.LeakyReLU)] == [0.3]


def test_cnn_padding_and_per_block_kernels():
    cnn = build_model({"name": "cnn", "channels": [4, 8], "kernel_size": [5, 3], "padding": "valid", "hidden": 0},
                      (1, 12, 12), 3)
    convs = [m for m in cnn.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(5, 5), (3, 3)] and [c.padding for c in convs] == [(0, 0), (0, 0)]
    # 12 -conv5-> 8 -pool-> 4 -conv3-> 2 -pool-> 1: 8 features
    assert cnn.embed(torch.zeros(1, 1, 12, 12)).shape == (1, 8)
    with pytest.raises(ConfigError, match="has 3 entries but model.channels has 2"):
        build_model({"name": "cnn", "channels": [4, 8], "kernel_size": [5, 3, 3]}, (1, 12, 12), 3)
    with pytest.raises(ConfigError, match="leaves no pixels"):
        build_model({"name": "cnn", "channels": [4], "kernel_size": 9, "padding": "valid"}, (1, 6, 6), 3)


class _LessonNet(torch.nn.Module):
    """PyTorch's "Training a Classifier" network, as the lesson writes it."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = torch.nn.Conv2d(3, 6, 5), torch.nn.Conv2d(6, 16, 5)
        self.pool = torch.nn.MaxPool2d(2, 2)
        self.fc1, self.fc2, self.fc3 = torch.nn.Linear(400, 120), torch.nn.Linear(120, 84), torch.nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(F.relu(self.conv1(x)))
        x = torch.flatten(self.pool(F.relu(self.conv2(x))), 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


def test_the_cifar_lesson_network_is_built_exactly():
    cfg = compose(["experiment=cifar10_tutorial"])
    ours, lesson = build_model(OmegaConf.to_container(cfg.model), (3, 32, 32), 10), _LessonNet()
    assert not any(isinstance(m, torch.nn.Dropout) for m in ours.modules())
    assert sum(p.numel() for p in ours.parameters()) == 62006  # the lesson's count
    with torch.no_grad():  # the same weights in the same order give the same outputs
        for mine, theirs in zip(ours.parameters(), lesson.parameters(), strict=True):
            mine.copy_(theirs)
    x = torch.randn(4, 3, 32, 32)
    assert torch.allclose(ours.eval()(x), lesson.eval()(x), atol=1e-6)
    assert (cfg.optimizer.lr, cfg.optimizer.momentum, cfg.trainer.batch_size, cfg.trainer.max_epochs) == (0.001, 0.9, 4, 2)


def test_cnn_dropout_goes_where_it_is_asked():
    def kinds(dropout_at):
        cnn = build_model({"name": "cnn", "channels": [4, 8], "hidden": [6, 5], "dropout_at": dropout_at}, (1, 8, 8), 3)
        return [type(m).__name__ for m in cnn.modules() if type(m).__name__ in ("MaxPool2d", "Flatten", "Linear",
                                                                                  "Dropout")]
    assert kinds(["blocks"]) == ["MaxPool2d", "Dropout", "MaxPool2d", "Dropout", "Flatten", "Linear", "Linear",
                                 "Linear"]
    assert kinds(["flatten", "hidden"]) == ["MaxPool2d", "MaxPool2d", "Flatten", "Dropout", "Linear", "Dropout",
                                            "Linear", "Dropout", "Linear"]
    with pytest.raises(ConfigError, match="Did you mean 'hidden'"):
        kinds(["hiden"])


def test_sgd_has_no_momentum_unless_asked_like_torch():
    params = [torch.nn.Parameter(torch.zeros(2))]
    shipped = OmegaConf.to_container(compose(["optimizer=sgd"]).optimizer)
    assert optimizer.OPTIMIZERS.build(shipped, params=params).param_groups[0]["momentum"] == 0.0
    assert optimizer.OPTIMIZERS.build({"name": "sgd"}, params=params).param_groups[0]["momentum"] == 0.0


def test_weight_decay_can_exempt_biases_and_norms():
    model = build_model({"name": "mlp", "batchnorm": True, "hidden_sizes": [4]}, (3,), 2)
    groups = optimizer.param_groups(model, 0.1, decay_norm_and_bias=False)
    assert [g["weight_decay"] for g in groups] == [0.1, 0.0]
    assert all(p.ndim > 1 for p in groups[0]["params"]) and all(p.ndim == 1 for p in groups[1]["params"])


def test_warmup_then_step_schedule():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    sched = scheduler.build({"name": "step", "step_size": 1, "gamma": 0.5, "warmup_epochs": 2}, opt, 10, 5, "min")
    lrs = []
    for _ in range(5):
        lrs.append(sched.lr())
        opt.step()
        sched.after_epoch(0.0)
    assert lrs == [0.5, 1.0, 1.0, 0.5, 0.25]


def test_plateau_schedule_reads_the_monitored_metric():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = scheduler.build({"name": "plateau", "patience": 0, "factor": 0.5}, opt, 10, 5, "min")
    for value in (1.0, 1.0, 1.0):
        sched.after_epoch(value)
    assert sched.lr() == 0.25


def test_expected_calibration_error_by_hand():
    conf = np.array([0.9, 0.9, 0.6, 0.6])
    correct = np.array([True, False, True, True])
    # bins: 0.9 -> accuracy 0.5 (gap 0.4, weight 0.5); 0.6 -> accuracy 1.0 (gap 0.4, weight 0.5)
    assert metrics.expected_calibration_error(conf, correct, bins=10) == pytest.approx(0.4)


def test_classification_metrics_by_hand():
    logits = torch.log(torch.tensor([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.1, 0.9]]))
    p = metrics.Predictions("multiclass", logits, torch.tensor([0, 1, 1, 1]))
    m = metrics.scalar_metrics(p, 2)
    assert m["accuracy"] == 0.75
    assert m["recall_macro"] == pytest.approx((1.0 + 2 / 3) / 2)
    assert m["precision_macro"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["roc_auc"] == pytest.approx(1.0)
    table = metrics.per_class_table(p, ["a", "b"])
    assert table[1]["support"] == 3 and table[1]["accuracy"] == pytest.approx(2 / 3)
    assert table[0]["mean_confidence_correct"] == pytest.approx(0.8)
    assert metrics.confusion(p, 2).tolist() == [[1, 0], [1, 2]]


def test_regression_metrics_in_original_units():
    scale = (torch.tensor([10.0]), torch.tensor([2.0]))
    p = metrics.Predictions("regression", torch.tensor([[0.0], [1.0]]), torch.tensor([[0.5], [1.0]]), target_scale=scale)
    m = metrics.scalar_metrics(p, 0)
    assert p.pred.ravel().tolist() == [10.0, 12.0]
    assert m["mae"] == pytest.approx(0.5) and m["mse"] == pytest.approx(0.5)


def test_device_batches_cover_every_row_once_per_epoch():
    part = Part(torch.arange(10).float().view(10, 1), torch.arange(10))
    batches = TensorBatches(part, 3, torch.device("cpu"), DeviceTransform(torch.device("cpu")), train=True, seed=1)
    seen = torch.cat([y for _, y in batches.epoch()])
    assert sorted(seen.tolist()) == list(range(10)) and len(batches) == 4
    state = batches.state_dict(mid_epoch=False)
    first = torch.cat([y for _, y in batches.epoch()])
    batches.load_state_dict(state)
    assert torch.equal(first, torch.cat([y for _, y in batches.epoch()]))


def test_augmentation_is_seeded_and_keeps_shapes():
    x = torch.rand(6, 3, 16, 16)
    outs = [augment_images(x, Augmentation.of(preset), torch.Generator().manual_seed(0))
            for preset in ("standard", "rotate", "cutout")]
    assert all(o.shape == x.shape for o in outs)
    assert torch.equal(outs[0], augment_images(x, Augmentation.of("standard"), torch.Generator().manual_seed(0)))
    assert not torch.equal(outs[0], x)


def test_augmentations_combine_in_order_with_their_parameters():
    from dlrun.build import augmentation

    combined = augmentation(compose(["regularization.augment=[flip,rotate]", "regularization.rotate_degrees=10"])
                            .regularization)
    assert combined.steps == ("flip", "rotate") and str(combined) == "flip + rotate ±10°"
    assert Augmentation.of(["standard", "cutout", "flip"]).steps == ("flip", "crop", "cutout")  # each step once
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 4, :] = 1  # a horizontal line through the centre
    still = augment_images(x, Augmentation.of("rotate", degrees=0), torch.Generator().manual_seed(0))
    assert torch.allclose(still, x, atol=1e-5)  # 0 degrees: no rotation
    turned = augment_images(x, Augmentation.of("rotate", degrees=45), torch.Generator().manual_seed(0))
    assert not torch.allclose(turned, x, atol=1e-2)
    hole = augment_images(torch.ones(4, 1, 16, 16), Augmentation.of("cutout", cutout=3), torch.Generator().manual_seed(0))
    assert ((1 - hole).sum((1, 2, 3)) <= 9).all()  # a hole of at most 3x3 pixels
    import dlrun

    with pytest.raises(ConfigError, match="regularization.augment=flipp is not known. Did you mean 'flip'"):
        dlrun.run(["regularization.augment=[flipp,rotate]"])


def test_uint8_images_are_scaled_and_normalised_on_the_device():
    transform = DeviceTransform(torch.device("cpu"), (0.5,), (0.5,))
    x = torch.tensor([0, 255], dtype=torch.uint8).view(2, 1, 1, 1)
    assert transform(x, train=False).view(-1).tolist() == [-1.0, 1.0]
    assert transform.denormalize(transform(x, train=False)).view(-1).tolist() == [0.0, 1.0]


def test_registered_names_cover_the_catalogue():
    assert {"digits", "iris", "wine", "breast_cancer", "diabetes", "synthetic", "csv", "mnist", "fashion_mnist",
            "cifar10", "image_folder", "hdf5", "webdataset", "fake"} <= set(DATASETS.names())
    assert {"logistic", "mlp", "cnn", "resnet18"} <= set(MODELS.names())
    assert set(optimizer.OPTIMIZERS.names()) == {"sgd", "adam", "adamw", "rmsprop", "lbfgs", "lion", "muon",
                                                     "schedule_free"}
    assert {"step", "multistep", "exponential", "cosine", "plateau", "onecycle"} <= set(scheduler.SCHEDULERS.names())
    assert {"cross_entropy", "focal", "bce_with_logits", "mse", "kl_div", "l1", "huber"} <= set(loss.LOSSES.names())


def test_data_contract_rejects_unknown_task():
    with pytest.raises(ConfigError, match="task 'ranking' is not known"):
        prepare(Data(x=np.zeros((10, 2)), y=np.zeros(10), task="ranking"), SPLIT)


def test_the_reliability_diagram_draws_the_bins_of_the_ece():
    from dlrun.results import plots

    logits = torch.randn(200, 3, generator=torch.Generator().manual_seed(0))
    p = metrics.Predictions("multiclass", logits, torch.randint(0, 3, (200,), generator=torch.Generator().manual_seed(1)))
    share, accuracy, confidence = metrics.calibration_bins(p.confidence, p.correct)
    filled = share > 0
    assert len(accuracy) == metrics.CALIBRATION_BINS
    assert metrics.scalar_metrics(p, 3)["ece"] == pytest.approx(
        float(np.sum(share[filled] * np.abs(accuracy[filled] - confidence[filled]))))
    data = type("Data", (), {"task": "multiclass"})()
    run = type("Run", (), {"p": p, "classify": True, "data": data})()
    [(stem, job)] = plots.PLOTS["reliability"](run)
    np.testing.assert_array_equal(job.args[0], accuracy)
    assert job.args[1].sum() == 200 and list(job.args[1] > 0) == list(filled)  # rows per bin, drawn above


def test_the_filters_plot_says_how_many_the_layer_has_when_it_shows_fewer():
    from dlrun.results import plots

    weight = np.random.default_rng(0).normal(size=(100, 3, 5, 5))
    assert plots.filters(weight)._suptitle.get_text() == "First convolution: the first 64 of its 100 filters, 5x5"
    assert plots.filters(weight[:10])._suptitle.get_text() == "First convolution: 10 filters, 5x5"


def test_the_samples_plot_shows_the_first_training_image_of_each_class():
    from dlrun import build
    from dlrun.results import plots

    data = build.dataset(compose([]))
    job = plots.DATA_PLOTS["samples"](data, {}, None, 0)
    images, labels, _, per_class = job.args
    assert labels == [str(c) for c in range(10)] and per_class == 1 and images.shape == (10, 1, 8, 8)
    first_seven = int(torch.nonzero(data.train.y == 7)[0])
    scale = images[7].max() / data.train.x[first_seven].float().max()  # denormalised to [0, 1]
    np.testing.assert_allclose(images[7], data.train.x[first_seven].float().numpy() * scale.item(), atol=1e-5)
    assert "one of each class, no augmentation" in job.function(*job.args)._suptitle.get_text()


def test_each_examples_probabilities_are_titled_by_the_runs_own_prediction():
    from dlrun.results import plots

    # at a decision threshold of 0.7 the first row is predicted 'benign' although 'malignant' is likelier
    p = type("P", (), {"probs": np.array([[0.4, 0.6], [0.1, 0.9]]), "true": np.array([0, 1]), "pred": np.array([0, 1])})()
    data = type("Data", (), {"task": "binary", "image": False, "class_names": ["benign", "malignant"]})()
    [(stem, job)] = plots.PLOTS["probabilities"](type("Run", (), {"p": p, "data": data, "classify": True})())
    fig = job.function(*job.args)
    assert [ax.get_title() for ax in fig.axes] == ["true benign, predicted benign (40%)",
                                                   "true malignant, predicted malignant (90%)"]
    assert [bar.get_width() for bar in fig.axes[0].patches] == [0.4, 0.6]


def test_an_mlp_on_images_shows_its_first_layer_units_as_images_of_the_input():
    from dlrun.results import plots

    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))
    images = type("Data", (), {"image": True, "input_shape": (1, 8, 8)})()
    [(stem, job)] = plots.PLOTS["filters"](type("Run", (), {"model": mlp, "data": images})())
    unit = mlp[1].weight.detach().numpy()[3]
    np.testing.assert_array_equal(job.args[0][3, 0], unit.reshape(8, 8))  # unit 3's weight on pixel (r, c)
    assert job.function(*job.args)._suptitle.get_text() == "First linear layer: 16 units' weights, 8x8"
    table = type("Data", (), {"image": False, "input_shape": (64,)})()
    assert plots.PLOTS["filters"](type("Run", (), {"model": mlp, "data": table})()) == [("filters", None)]


def test_lbfgs_evaluates_its_closure_and_learns_and_what_clashes_is_refused(tmp_path):
    import dlrun
    from conftest import built_loop
    from dlrun.train.fit_policy import FitState

    loop = built_loop("optimizer=lbfgs", "optimizer.max_iter=5", "trainer.batch_size=512", "model=logistic")
    calls = []
    forward = loop.forward
    loop.forward = lambda x: calls.append(1) or forward(x)
    x, y = next(iter(loop.train_batches.epoch()))
    first = loop.loss_fn(loop.forward(x), y).item()
    calls.clear()
    state = FitState()
    loop.step(x, y, state)
    assert len(calls) > 2  # one forward of the step, then the closure's own evaluations
    assert loop.loss_fn(forward(x), y).item() < first / 2 and state.step == 1
    for clash, key in ((["regularization.mixup_alpha=0.2"], "regularization.mixup_alpha"),
                       (["trainer.accumulate_grad_batches=2"], "trainer.accumulate_grad_batches")):
        with pytest.raises(ConfigError, match=f"optimizer=lbfgs evaluates the loss several times per step on one "
                                              f"batch, and {key} does not go with that"):
            dlrun.run(["optimizer=lbfgs", *clash], run_dir=tmp_path / "refused")
    with pytest.raises(ConfigError, match="optimizer=lbfgs takes one parameter group"):
        built_loop("optimizer=lbfgs", "regularization.weight_decay=1e-4")
