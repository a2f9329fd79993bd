"""Export the best model next to the checkpoints: TorchScript, or ONNX when the
optional onnx packages are installed."""

import copy
import warnings

import torch

from dlrun.artifacts import atomic_write
from dlrun.data.batches import DeviceTransform


def example_input(data, count=2):
    """A few test inputs, transformed as the model sees them."""
    x = data.test.x[:count] if torch.is_tensor(data.test.x) else torch.stack([data.test.x[i][0] for i in range(count)])
    return DeviceTransform.of(data, torch.device("cpu"))(x, train=False).float()


def write(kind, model, data, folder):
    """Write best.torchscript.pt or best.onnx into `folder`; returns its path."""
    model = copy.deepcopy(model).cpu().eval()
    x = example_input(data)
    if kind == "torchscript":
        path = folder / "best.torchscript.pt"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated upstream but still loads everywhere
            traced = torch.jit.trace(model, x)
            atomic_write(path, lambda handle: torch.jit.save(traced, handle))
    else:
        path = folder / "best.onnx"
        program = torch.onnx.export(model, (x,), dynamo=True, dynamic_shapes=({0: torch.export.Dim("batch")},))
        atomic_write(path, lambda handle: handle.write(program.model_proto.SerializeToString()))
    return path
