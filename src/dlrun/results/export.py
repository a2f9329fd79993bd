"""Export the best model next to the checkpoints, with its preprocessing inside: TorchScript,
or ONNX when the optional onnx packages are installed. The exported model takes raw inputs
and returns probabilities (or values in the target's units), as `task=predict` does; a JSON
file beside it says what goes in and what comes out (class names, input shape and columns)."""

import copy
import json
import warnings

import torch

from dlrun.results.artifacts import atomic_write, write_text
from dlrun.results.deployment import Deployed, describe


def write(kind, model, preprocessing, folder, threshold=0.5):
    """Write best.torchscript.pt or best.onnx, and best.json, into `folder`; returns the model's path."""
    deployed = Deployed(copy.deepcopy(model).cpu(), preprocessing).eval()
    x = torch.zeros(2, *preprocessing["raw_shape"])
    if kind == "torchscript":
        path = folder / "best.torchscript.pt"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated upstream but still loads everywhere
            traced = torch.jit.trace(deployed, x)
            atomic_write(path, lambda handle: torch.jit.save(traced, handle))
    else:
        path = folder / "best.onnx"
        program = torch.onnx.export(deployed, (x,), dynamo=True, dynamic_shapes=({0: torch.export.Dim("batch")},))
        atomic_write(path, lambda handle: handle.write(program.model_proto.SerializeToString()))
    write_text(folder / "best.json", json.dumps({"model": path.name, **describe(preprocessing, threshold)}, indent=2)
               + "\n")
    return path
