"""neuralab: learn, run and trust neural networks with PyTorch, from a single neuron to a U-Net."""

__version__ = "0.1.0"
