"""Real-time augmentation of stored grids: random rotations (uniform on SO(3)) and sub-voxel translations,
applied per sample by resampling with ``torch.nn.functional.grid_sample`` (trilinear, zero outside the box);
or the 48 exact symmetries of the cubic grid (``octahedral_batch``: axis permutations and flips, no resampling).

Convention: a stored grid samples a field f on voxel centres c + h·(i − (n−1)/2). ``rotate_grids(x, R, t)``
returns the grid of the field moved by x ↦ R x + t about the box centre (t in voxels), i.e. the grid that the
rotated and shifted molecule would have had, up to interpolation error and what leaves the box.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F



def rotate_grids(x: torch.Tensor, rot: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
    """x [B, C, n, n, n] (axes in array order i, j, k), rot [B, 3, 3], shift [B, 3] in voxels -> [B, C, n, n, n]."""
    b, _, n = x.shape[0], x.shape[1], x.shape[-1]
    # new(p) = old(R^T (p - t)): sample the old grid at R^T (p - t). grid_sample's coordinates are (x, y, z) =
    # (k, j, i) in normalised units (-1..1 over the box, align_corners=False), so flip to and from array order.
    flip = torch.tensor([[0, 0, 1], [0, 1, 0], [1, 0, 0]], dtype=x.dtype, device=x.device)
    rt = rot.to(x.dtype).transpose(1, 2)
    a = flip @ rt @ flip
    theta = torch.zeros(b, 3, 4, dtype=x.dtype, device=x.device)
    theta[:, :, :3] = a
    if shift is not None:
        t = (shift.to(x.dtype) * 2.0 / n) @ flip  # voxels -> normalised, array order -> (x, y, z)
        theta[:, :, 3] = -(a @ t.unsqueeze(-1)).squeeze(-1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def torch_rotations(batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """[batch, 3, 3] rotations uniform on SO(3), from normalised Gaussian quaternions (torch's RNG)."""
    q = torch.randn(batch, 4, generator=generator)
    q = q / q.norm(dim=1, keepdim=True)
    w, x, y, z = q.unbind(1)
    return torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
                        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
                        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], 1).reshape(batch, 3, 3)


def augment_batch(x: torch.Tensor, max_shift: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each grid of x [B, C, n, n, n] turned by its own uniform random rotation and shifted by up to
    ``max_shift`` voxels per axis."""
    rot = torch_rotations(x.shape[0], generator).to(x.device)
    shift = (torch.rand(x.shape[0], 3, generator=generator) * 2 - 1).to(x.device) * max_shift
    return rotate_grids(x, rot, shift)


def octahedral_batch(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each grid of x [B, C, n, n, n] mapped by its own random element of the full octahedral group O_h: one of
    the 6 permutations of the three axes, then a flip of each axis with probability 1/2 (48 elements, proper
    and improper). A box centred on its grid (voxel centres at h·(i − (n−1)/2)) maps onto itself, so each
    image is the exact grid of the turned or mirrored molecule, without interpolation. Densities and
    potentials are equivariant under mirrors as well as rotations, so all 48 are valid augmentations of the
    HK map and of scalar targets. Apply one draw to stacked channels to move input and target together."""
    out = []
    for b in range(x.shape[0]):
        perm = torch.randperm(3, generator=generator).tolist()
        flips = [1 + d for d in range(3) if bool(torch.rand((), generator=generator) < 0.5)]
        g = x[b].permute(0, 1 + perm[0], 1 + perm[1], 1 + perm[2])
        out.append(g.flip(flips) if flips else g)
    return torch.stack(out)


AUGMENT_MODES = ("so3", "octahedral", "none")


def augment_mode(value) -> str:
    """True/False (older configs) or a mode name -> one of AUGMENT_MODES."""
    if value is True:
        return "so3"
    if value is False or value is None:
        return "none"
    if value not in AUGMENT_MODES:
        raise ValueError(f"augmentation must be one of {', '.join(AUGMENT_MODES)}, not {value!r}")
    return value


def augment(x: torch.Tensor, mode: str, max_shift: float = 0.5) -> torch.Tensor:
    """Real-time augmentation of a batch by ``mode``: "so3" (random rotation and sub-voxel shift, resampled),
    "octahedral" (exact grid symmetries) or "none"."""
    if mode == "so3":
        return augment_batch(x, max_shift)
    if mode == "octahedral":
        return octahedral_batch(x)
    return x


class GridAugment:
    """The training transform of the volumetric families, applied to a batch before it reaches the network (a
    network never changes its own input): one random draw per sample moves the grids under ``keys`` together
    (cnn3d: the input; the HK map: input, promolecular and target densities)."""

    def __init__(self, mode: str, max_shift: float = 0.5, keys=("x",)):
        self.mode, self.max_shift, self.keys = augment_mode(mode), float(max_shift), tuple(keys)

    def __call__(self, batch: dict) -> dict:
        if self.mode == "none":
            return batch
        parts = [batch[k] for k in self.keys]
        moved = augment(torch.cat(parts, 1) if len(parts) > 1 else parts[0], self.mode, self.max_shift)
        out, c = dict(batch), 0
        for k, part in zip(self.keys, parts):
            out[k] = moved[:, c:c + part.shape[1]]
            c += part.shape[1]
        return out


def random_transforms(batch: int, rng: np.random.Generator, max_shift: float = 0.5,
                      rotate: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform rotations and uniform shifts in [-max_shift, max_shift] voxels per axis."""
    from elprop.density.grid import random_rotation
    rots = np.stack([random_rotation(rng) if rotate else np.eye(3) for _ in range(batch)])
    shifts = rng.uniform(-max_shift, max_shift, size=(batch, 3))
    return torch.from_numpy(rots).float(), torch.from_numpy(shifts).float()
