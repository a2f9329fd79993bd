"""Policy augmentations and random erasing against torchvision's own transforms: each operation
gives the same pixels for the same magnitude, and each policy's outputs follow the same
distribution as torchvision's transform applied image by image."""

import pytest
import torch
from scipy.stats import ks_2samp
from torchvision.transforms import v2

from dlrun.data import policies
from dlrun.data.batches import Augmentation, DeviceTransform

CPU = torch.device("cpu")
TRANSFORMS = {"trivial_augment": v2.TrivialAugmentWide, "rand_augment": v2.RandAugment, "auto_augment": v2.AutoAugment}


def _images(n=5, channels=3, h=20, w=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, channels, h, w), generator=g, dtype=torch.uint8).float() / 255


def _torchvision_operation(name, image, magnitude):
    """torchvision's policies apply an operation with a magnitude through this one method."""
    transform = v2.AutoAugment()
    return transform._apply_image_or_video_transform(image, name, magnitude, v2.InterpolationMode.NEAREST,
                                                     transform._fill)


def _magnitudes(name):
    if name == "Posterize":
        return [0.0, 1.0, 4.0, 7.0, 8.0]
    if name == "Solarize":
        return [0.0, 0.3, 0.75, 1.0]
    return [0.0, 0.29, -0.61, 0.99, -0.99, 3.7, -12.0, 45.0, 90.0, -90.0, 135.0]


@pytest.mark.parametrize("name", list(policies.OPERATIONS))
@pytest.mark.parametrize("channels", [1, 3])
def test_each_operation_gives_torchvisions_pixels(name, channels):
    x = _images(channels=channels)
    for magnitude in _magnitudes(name):
        if name in ("Brightness", "Color", "Contrast", "Sharpness") and magnitude < -1:
            continue  # a negative factor: not a magnitude any policy draws
        ours = policies.OPERATIONS[name](x, torch.full((len(x),), magnitude))
        theirs = torch.stack([_torchvision_operation(name, image, magnitude) for image in x])
        assert torch.allclose(ours, theirs, atol=1e-5), (name, magnitude)


def test_each_image_gets_its_own_operation_and_magnitude():
    x = _images(n=4)
    names = policies.policy_table("trivial_augment", 20, 24, CPU, 31).names
    op = torch.tensor([names.index(n) for n in ("Rotate", "Identity", "Posterize", "ShearX")])
    magnitude = torch.tensor([30.0, 0.0, 2.0, -0.5])
    out = policies.apply_operations(x, names, op, magnitude)
    for i in range(4):
        assert torch.allclose(out[i], _torchvision_operation(names[op[i]], x[i], magnitude[i].item()), atol=1e-5)


def _statistics(batch):
    """Two numbers per image that tell the operations apart: its mean and how much of it changed."""
    return batch.mean((1, 2, 3)).numpy(), (batch != _images(1)[0]).float().mean((1, 2, 3)).numpy()


@pytest.mark.parametrize("policy", policies.POLICIES)
def test_each_policy_follows_torchvisions_distribution(policy):
    n, image = 1500, _images(1)[0]
    torch.manual_seed(0)
    reference = TRANSFORMS[policy]()
    theirs = torch.stack([reference(image) for _ in range(n)])
    ours = policies.apply_policy(image.expand(n, -1, -1, -1).clone(), policy, torch.Generator().manual_seed(1))
    for a, b in zip(_statistics(ours), _statistics(theirs)):
        assert ks_2samp(a, b).pvalue > 1e-3, policy
    unlike = policies.apply_policy(image.expand(n, -1, -1, -1).clone(), "rand_augment", torch.Generator(),
                                   num_ops=1, magnitude=30)
    if policy == "rand_augment":  # the check can tell policies apart: other parameters fail it
        assert ks_2samp(_statistics(unlike)[0], _statistics(theirs)[0]).pvalue < 1e-3


def test_random_erasing_follows_torchvisions_distribution():
    n, ones = 3000, torch.ones(3, 24, 32)
    torch.manual_seed(0)
    theirs = torch.stack([v2.RandomErasing(value=0)(ones) for _ in range(n)])
    ours = policies.random_erasing(ones.expand(n, -1, -1, -1).clone(), torch.Generator().manual_seed(0))
    erased = [(1 - batch).mean((1, 2, 3)).numpy() for batch in (ours, theirs)]
    assert ks_2samp(*erased).pvalue > 1e-3
    assert 0.45 < (erased[0] > 0).mean() < 0.55  # half the images, as p=0.5
    rows = (1 - ours).amax((1, 3)).sum(1)  # an erased area is one rectangle: rows x columns
    cols = (1 - ours).amax((1, 2)).sum(1)
    assert torch.equal((1 - ours)[:, 0].sum((1, 2)), rows * cols)


def test_random_erasing_comes_after_normalisation():
    transform = DeviceTransform(CPU, [0.5], [0.25], Augmentation.of("random_erasing"), torch.Generator().manual_seed(0))
    out = transform(torch.full((64, 1, 16, 16), 255, dtype=torch.uint8), train=True)
    assert set(out.unique().tolist()) == {0.0, 2.0}  # erased to 0, the mean in normalised units
    assert torch.equal(transform(torch.full((2, 1, 16, 16), 255, dtype=torch.uint8), train=False), torch.full(
        (2, 1, 16, 16), 2.0))


def test_policies_are_seeded_and_combine_with_the_other_steps():
    aug = Augmentation.of(["standard", "rand_augment", "random_erasing"], num_ops=3, magnitude=12)
    assert aug.steps == ("flip", "crop", "rand_augment", "random_erasing")
    assert str(aug) == "flip + crop + rand_augment (3 ops, magnitude 12) + random_erasing"
    x = (_images(8) * 255).to(torch.uint8)
    runs = [DeviceTransform(CPU, augment=aug, generator=torch.Generator().manual_seed(5))(x, train=True)
            for _ in range(2)]
    assert torch.equal(*runs) and not torch.equal(runs[0], x.float() / 255)


def test_a_policy_augmented_run_learns_digits_and_shows_its_samples(tmp_path):
    import dlrun

    summary = dlrun.run(["dataset=digits", "model=cnn", "regularization.augment=[rand_augment,random_erasing]",
                         "regularization.augment_ops=1", "regularization.augment_magnitude=5",
                         "trainer.max_epochs=12", "plots=[samples]", "trainer.progress=false"], run_dir=tmp_path)
    assert summary["test"]["accuracy"] > 0.85
    assert (tmp_path / "plots" / "samples.png").stat().st_size > 0
