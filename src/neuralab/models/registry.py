"""The model registry and the contract every registered model follows.

A model factory takes keyword arguments only. The builder passes the data set's
`in_shape` (channels, height, width) and `num_classes` to every factory, followed by the
model options from the run configuration. Every returned module has:
  - `head`: what its outputs are, one of `neuralab.nn.losses.HEADS`;
  - `task`: "classification", "segmentation", "binary" or "regression".
"""

import inspect
from typing import Any

from torch import nn

from neuralab.registry import Registry

MODELS = Registry("model")


def model_options(name: str) -> dict[str, Any]:
    """Return the options model `name` accepts, with their defaults."""
    signature = inspect.signature(MODELS.get(name))
    return {
        key: parameter.default
        for key, parameter in signature.parameters.items()
        if key not in ("in_shape", "num_classes") and parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }


def build_model(name: str, in_shape: tuple[int, int, int] | None = None, num_classes: int | None = None,
                **options: Any) -> nn.Module:
    """Build model `name`; an unknown option raises a ValueError listing the valid ones."""
    valid = model_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(
            f"model {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(valid) or 'none'}"
        )
    try:
        model = MODELS.build(name, in_shape=in_shape, num_classes=num_classes, **options)
    except (TypeError, RuntimeError) as error:  # e.g. hidden_sizes=[-4] or dropout="abc" reach torch
        raise ValueError(f"model {name!r} cannot be built with options {options}: {error}; "
                         f"its options and defaults are: {valid}") from None
    assert hasattr(model, "head"), f"model {name!r} has no `head` attribute"
    assert hasattr(model, "task"), f"model {name!r} has no `task` attribute"
    return model
