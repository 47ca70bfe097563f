"""NVFP4 weights as Lightricks publish them (`ltx-2-19b-dev-fp4.safetensors`), read without FP4 kernels.

Each quantized linear layer `L` of a checkpoint has (ltx-kernels' format contract, `docs/NVFP4.md`):

    L.weight          uint8 (out, in/2): FP4 E2M1 codes, element 2j in the high nibble of byte j
    L.weight_scale    float8_e4m3fn block scales, one per 16 inputs, zero-padded to
                      (roundup(out, 128), roundup(in/16, 4)) and laid out in cuBLAS' 128x4 tiles
    L.weight_scale_2  float32 scalar: the per-tensor decode scale

and the weight is `code * block_scale * weight_scale_2`. Without Blackwell FP4 kernels scenekit
dequantizes once, at load. `quantize` writes the same format (tests build tiny checkpoints with it).
"""

from __future__ import annotations

import torch

BLOCK = 16
E2M1_MAX = 6.0
E4M3_MAX = 448.0
#: FP4 E2M1 values of codes 0-7 (bit 3 is the sign)
_E2M1 = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)


def scale_shape(rows: int, columns: int) -> tuple[int, int]:
    """Shape of the padded block-scale array of a (rows, columns) weight."""
    return -(-rows // 128) * 128, -(-(columns // BLOCK) // 4) * 4


def _tile_offsets(rows: int, blocks: int, padded_blocks: int) -> torch.Tensor:
    """Offset in the tiled scale array of each (row, block) scale, as a (rows, blocks) tensor."""
    row = torch.arange(rows).unsqueeze(1)
    col = torch.arange(blocks).unsqueeze(0)
    tile = (row // 128) * (padded_blocks // 4) + col // 4
    return tile * 512 + (row % 32) * 16 + ((row % 128) // 32) * 4 + col % 4


def dequantize(packed: torch.Tensor, block_scales: torch.Tensor, tensor_scale: torch.Tensor) -> torch.Tensor:
    """The float32 (out, in) weight of one NVFP4 layer (on the device of `packed`)."""
    rows, columns = packed.shape[0], packed.shape[1] * 2
    if columns % BLOCK:
        raise ValueError(f"an NVFP4 weight needs a multiple of {BLOCK} inputs, not {columns}")
    device = packed.device
    codes = torch.stack((packed >> 4, packed & 0xF), dim=-1).reshape(rows, columns).long()
    table = torch.tensor(_E2M1, dtype=torch.float32, device=device)
    values = table[codes & 0x7] * torch.where(codes & 0x8 > 0, -1.0, 1.0)
    padded = scale_shape(rows, columns)
    if tuple(block_scales.shape) != padded and block_scales.numel() != padded[0] * padded[1]:
        raise ValueError(f"block scales of shape {tuple(block_scales.shape)}, expected {padded}")
    flat = block_scales.reshape(-1).view(torch.float8_e4m3fn).float()
    scales = flat[_tile_offsets(rows, columns // BLOCK, padded[1]).to(device)]
    return values * scales.repeat_interleave(BLOCK, dim=1) * tensor_scale.float().reshape(())


def quantize(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(packed codes, tiled block scales, decode scale) of a (out, in) weight, as ltx-kernels writes them."""
    w = weight.detach().float()
    rows, columns = w.shape
    tensor_scale = (w.abs().max() / (E4M3_MAX * E2M1_MAX)).clamp(min=1e-12)
    blocks = w.reshape(rows, columns // BLOCK, BLOCK)
    block_scale = (blocks.abs().amax(-1) / E2M1_MAX / tensor_scale).clamp(max=E4M3_MAX).to(torch.float8_e4m3fn)
    step = (block_scale.float() * tensor_scale).clamp(min=1e-30).unsqueeze(-1)
    scaled = (blocks / step).clamp(-E2M1_MAX, E2M1_MAX)
    table = torch.tensor(_E2M1)
    nearest = (scaled.abs().unsqueeze(-1) - table).abs().argmin(-1)
    codes = (nearest | torch.where(scaled < 0, 8, 0)).reshape(rows, columns).to(torch.uint8)
    packed = (codes[:, 0::2] << 4) | codes[:, 1::2]
    padded = scale_shape(rows, columns)
    tiled = torch.zeros(padded[0] * padded[1], dtype=torch.uint8)
    tiled[_tile_offsets(rows, columns // BLOCK, padded[1]).reshape(-1)] = block_scale.reshape(-1).view(torch.uint8)
    return packed, tiled.view(torch.float8_e4m3fn).reshape(padded), tensor_scale.reshape(())
