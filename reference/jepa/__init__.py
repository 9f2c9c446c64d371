"""References for the masks of joint-embedding predictive architectures: V-JEPA's
multi-block 3D masks and I-JEPA's 2D ones from a seeded generator, the exact distribution of
their block sizes, and the collators' index lists."""

from .masks import (IJEPA_GRID, VJEPA_GRID, VJEPA_MASKS, IJEPAMasks, Multiblock3D, collate_indices, ijepa_multiblock,
                    ijepa_sizes, multiblock3d, multiblock3d_sizes)

__all__ = ["IJEPA_GRID", "IJEPAMasks", "Multiblock3D", "VJEPA_GRID", "VJEPA_MASKS", "collate_indices",
           "ijepa_multiblock", "ijepa_sizes", "multiblock3d", "multiblock3d_sizes"]
