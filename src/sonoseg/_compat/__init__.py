from sonoseg._compat.torchvision_shim import ensure_torchvision, torchvision_mode

__all__ = ["ensure_torchvision", "torchvision_mode"]
