"""Policy augmentations (TrivialAugment, RandAugment, AutoAugment) and random erasing, batched on
the training device with a magnitude drawn for every image.

torchvision owns the policies: which operations, their magnitude ranges and AutoAugment's
sub-policies are read from its transforms, and the parameter-free operations (autocontrast,
equalize, the blur of sharpness) are its batched kernels. What dlrun adds is that each image of a
batch draws its own operation and magnitude from the run's generator, with no host sync: every
operation is computed for the whole batch and each image keeps the one it drew. The geometric
operations follow torchvision's inverse affine matrix and sampling grid (nearest, zero fill), so
an image given the same operation and magnitude gets the same pixels (tests/test_policies.py).
"""

import functools
import math

import torch
import torch.nn.functional as F

POLICIES = ("trivial_augment", "rand_augment", "auto_augment")
MAGNITUDE_BINS = 31  # torchvision's default for TrivialAugmentWide and RandAugment
AUTO_AUGMENT_BINS = 10  # AutoAugment's sub-policies index ten magnitudes


@functools.cache
def _space(policy):
    """torchvision's table for `policy`: {operation: (magnitudes(num_bins, h, w), signed)}."""
    from torchvision.transforms import v2

    transform = {"trivial_augment": v2.TrivialAugmentWide, "rand_augment": v2.RandAugment,
                 "auto_augment": v2.AutoAugment}[policy]
    return transform._AUGMENTATION_SPACE


@functools.cache
def _auto_augment_policies():
    """AutoAugment's ImageNet sub-policies: pairs of (operation, probability, magnitude bin)."""
    from torchvision.transforms import v2

    return v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET)._policies


@functools.cache
def policy_table(policy, height, width, device, bins):
    """Made once per policy, image size and device: no copy to the device per batch."""
    return PolicyTable(policy, height, width, device, bins)


class PolicyTable:
    """One policy's operations and their magnitudes for one image size, as device tensors."""

    def __init__(self, policy, height, width, device, bins):
        space = _space(policy)
        self.names = tuple(space)
        rows, signed = [], []
        for magnitudes_of, is_signed in space.values():
            magnitudes = magnitudes_of(bins, height, width)
            rows.append(torch.zeros(bins) if magnitudes is None else magnitudes.float())
            signed.append(is_signed)
        self.magnitudes = torch.stack(rows).to(device)
        self.signed = torch.tensor(signed, device=device)

    def magnitude(self, op, bin_, generator):
        """Each image's magnitude for its operation and bin, negated half the time where signed."""
        value = self.magnitudes[op, bin_]
        flip = self.signed[op] & (torch.rand(op.shape, device=op.device, generator=generator) <= 0.5)
        return torch.where(flip, -value, value)


def apply_policy(x, policy, generator, num_ops=2, magnitude=9):
    """`policy` on a float batch (N, C, H, W) in [0, 1], one draw per image."""
    n, device = x.shape[0], x.device
    if policy == "auto_augment":
        table = policy_table(policy, *x.shape[-2:], device, AUTO_AUGMENT_BINS)
        chosen = torch.randint(0, len(_auto_augment_policies()), (n,), device=device, generator=generator)
        for stage in _auto_augment_stages(table, device):
            op, probability, bin_ = (column[chosen] for column in stage)
            applied = torch.rand(n, device=device, generator=generator) <= probability
            x = apply_operations(x, table.names, op, table.magnitude(op, bin_, generator), applied)
        return x
    table = policy_table(policy, *x.shape[-2:], device, MAGNITUDE_BINS)
    for _ in range(num_ops if policy == "rand_augment" else 1):
        op = torch.randint(0, len(table.names), (n,), device=device, generator=generator)
        if policy == "rand_augment":
            bin_ = torch.full_like(op, magnitude)
        else:
            bin_ = torch.randint(0, MAGNITUDE_BINS, (n,), device=device, generator=generator)
        x = apply_operations(x, table.names, op, table.magnitude(op, bin_, generator))
    return x


@functools.cache
def _auto_augment_stages(table, device):
    """AutoAugment's sub-policies as two stages of (operation, probability, bin) columns."""
    policies = _auto_augment_policies()
    stages = []
    for stage in range(2):
        steps = [policy[stage] for policy in policies]
        stages.append((torch.tensor([table.names.index(name) for name, _, _ in steps], device=device),
                       torch.tensor([probability for _, probability, _ in steps], device=device),
                       torch.tensor([bin_ or 0 for _, _, bin_ in steps], device=device)))
    return stages


def apply_operations(x, names, op, magnitude, applied=None):
    """Image i gets operation names[op[i]] with magnitude[i] (where applied[i])."""
    out = x
    for index, name in enumerate(names):
        chosen = op == index
        if applied is not None:
            chosen = chosen & applied
        out = torch.where(chosen.view(-1, 1, 1, 1), OPERATIONS[name](x, magnitude), out)
    return out


def _blend(x, degenerate, factor):
    """torchvision's blend with a factor per image."""
    factor = factor.view(-1, 1, 1, 1)
    return (x * factor + degenerate * (1 - factor)).clamp(0, 1)


def _gray(x):
    if x.shape[1] == 1:
        return x
    r, g, b = x.unbind(1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(1)


def _color(x, m):
    return x if x.shape[1] == 1 else _blend(x, _gray(x), 1 + m)


def _contrast(x, m):
    return _blend(x, _gray(x).mean(dim=(1, 2, 3), keepdim=True), 1 + m)


def _sharpness(x, m):
    from torchvision.transforms.v2 import functional as TF

    return _blend(x, TF.adjust_sharpness(x, 0.0), 1 + m)


def _posterize(x, bits):
    levels = (2 ** bits).view(-1, 1, 1, 1)
    return (x * levels).floor().clamp(min=0).minimum(levels - 1) / levels


def _solarize(x, threshold):
    return torch.where(x >= threshold.view(-1, 1, 1, 1), 1 - x, x)


def _torchvision(name):
    def kernel(x, _):
        from torchvision.transforms.v2 import functional as TF

        return getattr(TF, name)(x)
    return kernel


def affine(x, angle=None, translate=None, shear=None, corner=False):
    """torchvision's affine (and rotate) with each image's own angle, translation and shear (degrees
    and pixels, (N,) tensors or None), nearest sampling, zero fill; `corner`: about the top-left
    corner (as AutoAugment shears) instead of the centre."""
    n, _, h, w = x.shape
    # The matrix in double precision, as torchvision computes it in Python floats, then in x's dtype.
    exact = torch.float32 if x.device.type == "mps" else torch.float64  # MPS has no float64
    zero = torch.zeros(n, device=x.device, dtype=exact)
    rot = torch.deg2rad(angle.to(exact)) if angle is not None else zero
    sx, sy = (torch.deg2rad(s.to(exact)) if s is not None else zero for s in (shear or (None, None)))
    tx, ty = (t.to(exact) if t is not None else zero for t in (translate or (None, None)))
    cx, cy = (-w / 2, -h / 2) if corner else (0.0, 0.0)
    # The inverse of centre * translate * rotate-shear * centre^-1, the matrix torchvision documents.
    a = torch.cos(rot - sy) / torch.cos(sy)
    b = -torch.cos(rot - sy) * torch.tan(sx) / torch.cos(sy) - torch.sin(rot)
    c = torch.sin(rot - sy) / torch.cos(sy)
    d = -torch.sin(rot - sy) * torch.tan(sx) / torch.cos(sy) + torch.cos(rot)
    m0, m1, m3, m4 = d, -b, -c, a
    m2 = m0 * (-cx - tx) + m1 * (-cy - ty) + cx
    m5 = m3 * (-cx - tx) + m4 * (-cy - ty) + cy
    theta = torch.stack([torch.stack([m0, m1, m2], 1), torch.stack([m3, m4, m5], 1)], 1).to(x.dtype)
    # The sampling grid at pixel centres, as torchvision builds it.
    xs = torch.linspace(-w * 0.5 + 0.5, w * 0.5 - 0.5, w, device=x.device)
    ys = torch.linspace(-h * 0.5 + 0.5, h * 0.5 - 0.5, h, device=x.device)
    base = torch.stack([xs.expand(h, w), ys[:, None].expand(h, w), torch.ones(h, w, device=x.device)], -1)
    scaled = theta.transpose(1, 2) / torch.tensor([0.5 * w, 0.5 * h], device=x.device)
    grid = base.view(1, h * w, 3).expand(n, -1, -1).bmm(scaled).view(n, h, w, 2)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def _shear_angle(m):
    return torch.rad2deg(torch.atan(m.double() if m.device.type != "mps" else m))


OPERATIONS = {
    "Identity": lambda x, m: x,
    "ShearX": lambda x, m: affine(x, shear=(_shear_angle(m), None), corner=True),
    "ShearY": lambda x, m: affine(x, shear=(None, _shear_angle(m)), corner=True),
    "TranslateX": lambda x, m: affine(x, translate=(m.trunc(), None)),
    "TranslateY": lambda x, m: affine(x, translate=(None, m.trunc())),
    "Rotate": lambda x, m: affine(x, angle=-m),  # torchvision's rotate turns the other way from affine
    "Brightness": lambda x, m: _blend(x, torch.zeros_like(x), 1 + m),
    "Color": _color,
    "Contrast": _contrast,
    "Sharpness": _sharpness,
    "Posterize": _posterize,
    "Solarize": _solarize,
    "AutoContrast": _torchvision("autocontrast"),
    "Equalize": _torchvision("equalize"),
    "Invert": lambda x, m: 1 - x,
}


def random_erasing(x, generator, p=0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3), tries=10):
    """torchvision's RandomErasing (value 0, after normalisation) with each image's own rectangle:
    of `tries` draws of area and aspect ratio, the first that fits the image; none fits: unchanged."""
    n, _, h, w = x.shape
    device = x.device
    area = h * w * torch.empty(n, tries, device=device).uniform_(*scale, generator=generator)
    aspect = torch.empty(n, tries, device=device).uniform_(math.log(ratio[0]), math.log(ratio[1]),
                                                            generator=generator).exp()
    eh, ew = (area * aspect).sqrt().round(), (area / aspect).sqrt().round()
    fits = (eh < h) & (ew < w)
    first = fits.int().argmax(1, keepdim=True)  # the first try that fits (0 if none does)
    eh, ew = eh.gather(1, first).squeeze(1), ew.gather(1, first).squeeze(1)
    top = (torch.rand(n, device=device, generator=generator) * (h - eh + 1)).floor()
    left = (torch.rand(n, device=device, generator=generator) * (w - ew + 1)).floor()
    erase = fits.any(1) & (torch.rand(n, device=device, generator=generator) < p)
    rows = torch.arange(h, device=device).view(1, h, 1)
    cols = torch.arange(w, device=device).view(1, 1, w)
    inside = ((rows >= top.view(-1, 1, 1)) & (rows < (top + eh).view(-1, 1, 1))
              & (cols >= left.view(-1, 1, 1)) & (cols < (left + ew).view(-1, 1, 1)))
    return x.masked_fill((inside & erase.view(-1, 1, 1)).unsqueeze(1), 0.0)
