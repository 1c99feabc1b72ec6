"""Memory of a volumetric model before it trains: parameters (with gradients and Adam state), activations per
sample at the store's grid, and the largest batch that fits a given device memory."""
from __future__ import annotations

from elprop.core.dataset import InputError


def volumetric_memory(model: str, store, channels, extensive, *, dim: int, layers: int, dropout: float = 0.0,
                      arch: dict | None = None, batch_size: int = 1, crop: int = 0, pool: int = 1,
                      device_memory: str | None = None) -> tuple[dict, str]:
    """(estimate dict, one-line report). ``store``: a path or an opened DensityStore. Raises InputError for
    options that do not fit the store's grid (a crop that is not a multiple of the U-Net's step, a pool that
    leaves too small a grid)."""
    from elprop.density.store import open_store
    from elprop.models import build_model
    from elprop.models.cnn3d import memory_estimate, parse_bytes
    n = int(open_store(store).grid_params["shape"])
    ch = list(channels)
    if not ch:
        raise InputError("--channels is empty")
    net = build_model(model, list(extensive), in_dim=len(ch), dim=dim, layers=layers, dropout=dropout,
                      **(arch or {}))
    if model == "hk-unet" and crop:
        if crop % net.step or crop > n:
            raise InputError(f"--crop {crop}: give a multiple of {net.step} (the U-Net's downsampling) "
                             f"up to the grid's {n}")
    try:
        mem = parse_bytes(device_memory) if device_memory else None
    except ValueError as e:
        raise InputError(str(e)) from None
    if model == "cnn3d" and n // pool < 2 ** layers:
        raise InputError(f"--pool {pool} with {layers} stages leaves too small a grid from the store's {n}³ "
                         f"(need {n} / pool >= 2^layers = {2 ** layers})")
    side = crop if model == "hk-unet" and crop else n
    est = memory_estimate(net, (len(ch), side, side, side), mem)  # cnn3d pools its input itself
    pooled = f" (pooled to {side // pool}³)" if model == "cnn3d" and pool > 1 else ""
    line = (f"memory: {est['parameters']:,} parameters ({est['parameter_bytes'] / 2 ** 20:.1f} MiB with gradients "
            f"and Adam state); activations {est['activation_bytes_per_sample'] / 2 ** 20:.1f} MiB per sample "
            f"at {len(ch)}x{side}³{pooled}{' (training crops)' if model == 'hk-unet' and crop else ''}; batch "
            f"{batch_size} needs {(est['parameter_bytes'] + batch_size * est['activation_bytes_per_sample']) / 2 ** 30:.2f} GiB")
    if mem:
        line += f"; largest batch in {device_memory}: {est['max_batch']}"
    return est, line
