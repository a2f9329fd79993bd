"""Models: registered builders that receive the input shape and number of outputs.

Every built-in model is a :class:`Network`: ``embed(x)`` gives the penultimate
activations (for embedding plots) and ``head`` maps them to outputs.
"""

from dlrun.models.base import MODELS, Network, build, embeddings

__all__ = ["MODELS", "Network", "build", "embeddings"]
