"""neuralab: learn, run and trust neural networks with PyTorch, from a single neuron to a U-Net."""

__version__ = "0.1.0"


def load(run_dir, device: str = "cpu"):
    """Return a Predictor for the finished run in `run_dir`; see `neuralab.predict.predictor`.

    Imported on first use, so that `import neuralab` stays fast and does not import torch.
    """
    from neuralab.predict import load as load_predictor

    return load_predictor(run_dir, device)
