"""Device choice, mixed precision, determinism, compilation, the CPU thread rule and the CPU float mode.

The thread count comes from a fixed rule on the model's work per step, never from the
machine's measured load, so a configuration trains identically every time it runs. Small
steps lose more to thread synchronization than they gain: measured on a 2-core machine,
the 784-128-64-10 MLP at batch 64 ran faster on one thread than on two.
"""

import os

import torch
from torch import nn

# Multiply-accumulates per step below which one thread is used (the MLP at batch 64 does
# about 7 million; a small CNN at batch 64 does several hundred million).
SINGLE_THREAD_MACS = 50_000_000

# Autocast dtype of each --precision value; fp32 runs without autocast.
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

# cuBLAS is deterministic only with a fixed workspace (CUDA documentation, "Results reproducibility");
# it reads this variable when it creates its first handle.
CUBLAS_DETERMINISTIC_WORKSPACE = ":4096:8"


def resolve_device(name: str) -> torch.device:
    """Return the torch device for `name`: auto, cpu, cuda or mps."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    if name not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unknown device {name!r}; valid devices: auto, cpu, cuda, mps")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch finds no CUDA GPU; use --device cpu or auto")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' requested but this machine has no Apple GPU; use --device cpu or auto")
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """Return the autocast dtype of `precision` on `device` (None for fp32), or raise ValueError."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; valid precisions: {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("precision 'fp16' is not supported on CPU: fp16 gradients need loss scaling, which "
                         "neuralab applies on GPUs only; use --precision bf16 (the range of fp32, no scaling) or fp32")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError(f"precision 'bf16' requested but {torch.cuda.get_device_name(device)} has no bf16 "
                         "support; use --precision fp16 or fp32")
    return PRECISIONS[precision]


def build_grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """Return a gradient scaler for fp16 on a GPU, where small gradients would underflow; otherwise None."""
    if precision != "fp16" or device.type == "cpu":
        return None
    return torch.amp.GradScaler(device.type)


def set_deterministic(deterministic: bool, device: torch.device) -> None:
    """Switch PyTorch's deterministic algorithms on or off. cuDNN autotuning runs on CUDA when they are off.

    Deterministic GPU kernels are slower, and an operation without one raises RuntimeError.
    CPU training in neuralab is deterministic without this setting.
    """
    if deterministic and device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_DETERMINISTIC_WORKSPACE)
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = device.type == "cuda" and not deterministic


def memory_format(model: nn.Module) -> torch.memory_format:
    """Return the memory format that runs `model` fastest: channels-last for convolutional models.

    oneDNN on CPU and cuDNN run 2-D convolutions faster on channels-last tensors: an mnist-cnn
    forward pass of 64 images took 0.13 ms per image against 0.35 (one CPU thread, PyTorch 2.14).
    """
    has_convolutions = any(isinstance(module, nn.Conv2d) for module in model.modules())
    return torch.channels_last if has_convolutions else torch.contiguous_format


def compile_model(model: nn.Module) -> nn.Module:
    """Return `model` compiled with torch.compile. The compiled module shares the model's parameters.

    Compilation happens at the first forward pass of each new input shape or mode (training,
    evaluation), so the first batches of a run are slow. Past torch._dynamo's recompile limit
    (8 in PyTorch 2.14), further shapes run uncompiled, as with images of many sizes.
    """
    if not torch._dynamo.is_dynamo_supported():
        raise ValueError(f"--compile: torch.compile is not supported with PyTorch {torch.__version__} on this "
                         "Python version; run without --compile")
    # Static shapes: after a short last batch, the default recompiles for any batch size, and that
    # dynamic mnist-mlp step ran 1.2-1.5x slower than a static one (two runs, busy 2-core CPU, PyTorch 2.14).
    return torch.compile(model, dynamic=False)


def count_macs(model: nn.Module, in_shape: tuple[int, ...]) -> int:
    """Return the multiply-accumulates of one forward pass of one sample through linear and conv layers."""
    total = 0

    def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Linear):
            total += module.in_features * module.out_features
        elif isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            kernel = module.weight[0].numel() if isinstance(module, nn.Conv2d) else module.weight[:, 0].numel()
            total += output[0].numel() * kernel

    handles = [module.register_forward_hook(count) for module in model.modules()]
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *in_shape)))
        model.train(was_training)
    finally:
        for handle in handles:
            handle.remove()
    return total


def choose_threads(model: nn.Module, in_shape: tuple[int, ...], batch_size: int, processes: int = 1) -> int:
    """Return the CPU thread count for training `model` at `batch_size`, with `processes` sharing the cores."""
    cores = max((os.cpu_count() or 1) // processes, 1)
    macs_per_step = count_macs(model, in_shape) * batch_size
    return 1 if macs_per_step < SINGLE_THREAD_MACS else cores


def flush_subnormals() -> None:
    """Flush subnormal floats to zero on this CPU thread, and on the threads started after this call.

    Adam's running means for dead units decay into subnormal floats, which x86 CPUs compute
    many times slower: without flushing, mnist-mlp-tutorial epochs slowed from about 0.72 to
    0.8-0.97 s as training went on (one thread of a 2-core AMD EPYC). Flushing changes only
    values below 1.2e-38, float32's smallest normal number.
    """
    # NOTE: torch offers no way to set the mode of threads it started earlier, so their CPU work keeps subnormals.
    torch.set_flush_denormal(True)
