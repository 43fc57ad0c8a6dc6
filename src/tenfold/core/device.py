"""Device choice: CUDA when present, CPU otherwise (GPU is optional everywhere)."""

import torch


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """Return `device` if given, else `cuda` when available, else `cpu`."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        from tenfold.core.errors import TenfoldError

        raise TenfoldError(f"device {str(device)!r} requested but CUDA is not available; use 'cpu' or 'auto'")
    return dev
