"""The weights a schedule-free optimizer evaluates.

Schedule-free optimizers (optimizer=schedule_free) train one sequence of weights and evaluate
another, an average of the iterates; their `eval()` moves the model's weights to the average
and `train()` back. That round trip is not exact in floating point, so the loop never makes it
on the weights it trains: it copies the evaluated weights into a model of their own (validated,
checkpointed as `model`, tested, exported) and puts the trained ones back bit for bit, so a
resumed run continues exactly (the trained weights go into checkpoints as `trained_model`).
"""

import copy

import torch


def switches_weights(optimizer):
    """Whether `optimizer` evaluates other weights than it trains (its train()/eval() switch)."""
    return callable(getattr(optimizer, "eval", None)) and callable(getattr(optimizer, "train", None))


class EvaluatedWeights:
    """A copy of the model holding the weights the optimizer evaluates."""

    def __init__(self, model):
        self.model = copy.deepcopy(model)

    @torch.no_grad()
    def refresh(self, model, optimizer):
        trained = [p.detach().clone() for p in model.parameters()]
        optimizer.eval()
        self.model.load_state_dict(model.state_dict())
        optimizer.train()
        for p, kept in zip(model.parameters(), trained):
            p.copy_(kept)
