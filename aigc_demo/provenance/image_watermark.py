"""An invisible watermark for pictures of 128 px and more: a 24-bit id that links a copy back to its manifest.

The project's own scheme, because block-DCT marks (``invisible-watermark``'s DWT-DCT) read back only about
two bits in three on emoji art: large flat white areas clip every bright change. Here the luminance carries a
grid of 32x32 smooth bumps (a raised cosine per cell, 8 px at 256 px), each pushed up or down by a keyed chip
times the bit it carries; each of the 40 bits (a 24-bit id and a 16-bit CRC) owns 25 cells spread over the
picture. Low-frequency bumps survive JPEG and halving; in white areas only the darkening half survives, which
is still half the signal.

Reading resizes the picture to the grid (256 px), takes the residual against a local mean, and scores every
cell with the bump (a matched filter), with responses clipped to one bump's so outlines do not outvote it.
Crops shift the grid and change the scale, so the reader guesses the size before a crop (as is, 5-15%
larger), searches cell and pixel offsets for the alignment where the keyed chips agree most, decodes there
only, and accepts the id when its CRC matches, trying the three least certain bits both ways
(``bench/provenance.py`` measures it). The search over every offset is a correlation of the cells with each
bit's chips, done as products of spectra.

A film marks every frame with one id (``FrameMarker``); ``read_frames`` reads the frames' mean, where the
fixed mark adds up and the moving pictures blur away.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

GRID = 32  # cells per side
SIDE = 256  # the reading resolution: 8-px cells
CELL = SIDE // GRID
ID_BITS, CRC_BITS = 24, 16
BITS = ID_BITS + CRC_BITS
AMPLITUDE = 10.0  # peak luminance change (0-255); white areas clip half of it
MIN_PSNR = 38.0  # dB against the unmarked picture: where little clips, the amplitude is lowered to keep it
MAX_MSE = 255.0**2 / 10 ** (MIN_PSNR / 10)
# Decoding also tries flipping the least certain bits: recovers one or two errors, at 2**UNSURE_BITS times the
# chance of a false id (8 in 65,536 per unmarked picture).
UNSURE_BITS = 3
FALSE_ID_ODDS = 2**CRC_BITS // 2**UNSURE_BITS  # one unmarked picture in this many decodes to some id
MIN_SIDE = 128  # smaller pictures have no room for 1,008 cells
KEY = 0x5EED
MAX_SHIFT = 4  # cells searched each way: a 10% crop of 256 px moves the grid by up to ~3 cells


def _layout(key: int = KEY) -> tuple[np.ndarray, np.ndarray]:
    """(owner bit of each cell, chip of each cell), both (GRID, GRID); cells past BITS x 21 carry nothing."""
    rng = np.random.default_rng(key)
    per_bit = GRID * GRID // BITS
    owner = np.full(GRID * GRID, -1)
    owner[rng.permutation(GRID * GRID)[: per_bit * BITS]] = np.repeat(np.arange(BITS), per_bit)
    chip = rng.choice([-1.0, 1.0], GRID * GRID)
    return owner.reshape(GRID, GRID), chip.reshape(GRID, GRID)


OWNER, CHIP = _layout()
_HANN = np.sin(np.pi * (np.arange(CELL) + 0.5) / CELL) ** 2
BUMP = np.outer(_HANN, _HANN)  # one cell's shape, peak 1
BUMP_RESPONSE = AMPLITUDE * float((BUMP * (BUMP - BUMP.mean())).sum())  # a whole bump's matched response


def crc16(value: int) -> int:
    """CRC-16/CCITT of the id's 3 bytes."""
    crc = 0xFFFF
    for byte in value.to_bytes(3, "big"):
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def _bits(watermark_id: int) -> np.ndarray:
    word = (watermark_id << CRC_BITS) | crc16(watermark_id)
    return np.array([(word >> (BITS - 1 - i)) & 1 for i in range(BITS)], dtype=np.float64) * 2 - 1


class FrameMarker:
    """Marks pictures with one id: the pattern is made once per picture size, so marking a film's frames costs
    one addition each."""

    def __init__(self, watermark_id: int):
        self.watermark_id = watermark_id
        signs = np.where(OWNER >= 0, _bits(watermark_id)[OWNER] * CHIP, 0.0)
        self._pattern = (np.kron(signs, BUMP) * AMPLITUDE).astype(np.float32)  # (SIDE, SIDE)
        self._sized: dict[tuple[int, int], np.ndarray] = {(SIDE, SIDE): self._pattern[..., None]}

    def __call__(self, image: Image.Image) -> Image.Image:
        """``image`` with the id in its luminance; pictures under MIN_SIDE are returned as is."""
        if min(image.size) < MIN_SIDE:
            return image
        pattern = self._sized.get(image.size)
        if (
            pattern is None
        ):  # the grid spans the longer side, as the reader scales it; a wide picture crops it
            side = max(image.size)
            resized = np.asarray(
                Image.fromarray(self._pattern).resize((side, side), Image.Resampling.BICUBIC)
            )
            pattern = self._sized.setdefault(image.size, resized[: image.height, : image.width, None])
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
        gain = 1.0
        for _ in range(3):  # few white areas clip the mark: turn it down to keep MIN_PSNR
            marked = np.round(np.clip(rgb + pattern * gain, 0, 255))
            mse = float(np.mean((marked - rgb) ** 2))
            if mse <= MAX_MSE:
                break
            gain *= 0.99 * np.sqrt(MAX_MSE / mse)
        return Image.fromarray(marked.astype(np.uint8))


def embed(image: Image.Image, watermark_id: int) -> Image.Image:
    """``image`` with ``watermark_id`` (24 bits) in its luminance; pictures under MIN_SIDE are returned as is."""
    return FrameMarker(watermark_id)(image)


@dataclass(frozen=True)
class Reading:
    found: bool  # the decoded id's CRC matches (allowing UNSURE_BITS flips): by chance ~1 in 8,000 unmarked
    watermark_id: int | None
    word: int  # the 40 bits decoded at the best alignment (id and CRC), found or not
    agreement: float  # how strongly the chips agree there (a confidence, not the test)
    shift: tuple[int, int]  # the grid's offset found, in pixels at 256 px
    too_small: bool = False  # under MIN_SIDE: pictures that small are not marked
    flipped: int = 0  # uncertain bits flipped before the CRC matched

    def summary(self) -> str:
        if self.too_small:
            return (
                f"none found; pictures under {MIN_SIDE} px are not watermarked (Upscale x4 makes them 256 px)"
            )
        if self.found:
            repaired = f" after correcting {self.flipped} uncertain bit(s)" if self.flipped else ""
            return (
                f"watermark found: id {self.watermark_id:06x}, which the signed parameters record (its checksum "
                f"matched{repaired}; an unmarked picture passes this test about once in {FALSE_ID_ODDS:,})"
            )
        return "no watermark found (no grid alignment decodes to an id with a matching checksum)"


def _cell_scores(luma: np.ndarray) -> np.ndarray:
    """Matched-filter response of the residual at every pixel offset: (SIDE, SIDE)."""
    from scipy import ndimage

    residual = luma - ndimage.uniform_filter(luma, size=CELL + 1, mode="reflect")
    response = ndimage.correlate(residual, BUMP - BUMP.mean(), mode="constant")
    # Outlines and colour edges answer far louder than any bump: clipped, they vote like one cell, not ten.
    return np.clip(response, -BUMP_RESPONSE, BUMP_RESPONSE)


# The picture's size in the copy, relative to the copy: all of it, cropped by 5-15% (it was larger), or inside
# a margin (a screenshot: it is smaller).
CROP_GUESSES = (1.0, 1 / 0.95, 1 / 0.9, 1 / 0.85, 0.95, 0.925, 0.9)
_SPAN = GRID + 2 * MAX_SHIFT  # cells searched per side
_SHIFTS = 2 * MAX_SHIFT + 1  # cell shifts per side


def _conj_spectrum(weights_of_cell: np.ndarray) -> np.ndarray:
    """Conjugate 2-D spectrum of (..., GRID, GRID) cell weights, zero-padded to _SPAN: correlating with it is a
    product of spectra, and with _SPAN = GRID + 2 * MAX_SHIFT no shift wraps around."""
    padded = np.zeros((*weights_of_cell.shape[:-2], _SPAN, _SPAN))
    padded[..., :GRID, :GRID] = weights_of_cell
    return np.conj(np.fft.rfft2(padded))


# Each bit's keyed chips on the cells it owns, and every carrying cell, as spectra.
_BIT_CHIPS = _conj_spectrum(np.stack([np.where(OWNER == b, CHIP, 0.0) for b in range(BITS)]))
_CARRIERS = _conj_spectrum((OWNER >= 0).astype(np.float64))


def _best_alignment(response: np.ndarray) -> tuple[float, np.ndarray, tuple[int, int]]:
    """(agreement, bit scores, shift) at the grid alignment where the chips agree most: every pixel offset
    within a cell times every cell shift up to MAX_SHIFT each way, as correlations of cells with chips."""
    pad = MAX_SHIFT * CELL
    padded = np.pad(response, (pad, pad + CELL))
    # cells[sy, sx, i, j]: the response at cell (i, j) of the grid offset by (sy, sx) pixels
    block = padded[CELL // 2 : CELL // 2 + _SPAN * CELL, CELL // 2 : CELL // 2 + _SPAN * CELL]
    cells = block.reshape(_SPAN, CELL, _SPAN, CELL).transpose(1, 3, 0, 2)
    spectrum = np.fft.rfft2(cells)[:, :, None]  # (CELL, CELL, 1, _SPAN, _SPAN // 2 + 1)
    shape = (_SPAN, _SPAN)
    bit_scores = np.fft.irfft2(spectrum * _BIT_CHIPS, s=shape)[..., :_SHIFTS, :_SHIFTS]
    magnitude = np.fft.irfft2(np.fft.rfft2(np.abs(cells)) * _CARRIERS, s=shape)[..., :_SHIFTS, :_SHIFTS]
    # agreement: the mean |bit score| over the mean |response| of a bit's cells
    agreement = np.abs(bit_scores).mean(axis=2) / (magnitude / BITS + 1e-9)  # (CELL, CELL, _SHIFTS, _SHIFTS)
    sy, sx, u, v = np.unravel_index(int(agreement.argmax()), agreement.shape)
    shift = ((int(u) - MAX_SHIFT) * CELL + int(sy), (int(v) - MAX_SHIFT) * CELL + int(sx))
    return float(agreement[sy, sx, u, v]), bit_scores[sy, sx, :, u, v], shift


def read(image: Image.Image) -> Reading:
    """Find the watermark in ``image`` (any size): guess its size before a crop, search the grid's alignment,
    decode there, check the CRC."""
    if min(image.size) < MIN_SIDE // 2:
        return Reading(False, None, 0, 0.0, (0, 0), too_small=True)
    luma_full = image.convert("L")
    best = (-1.0, np.zeros(BITS), (0, 0))
    for guess in CROP_GUESSES:
        scale = SIDE / (max(image.size) * guess)
        size = (round(image.width * scale), round(image.height * scale))
        canvas = np.zeros((SIDE, SIDE))
        small = np.asarray(luma_full.resize(size, Image.Resampling.BICUBIC), dtype=np.float64)[:SIDE, :SIDE]
        canvas[: small.shape[0], : small.shape[1]] = small
        canvas[small.shape[0] :, :] = canvas[small.shape[0] - 1 : small.shape[0], :] if small.shape[0] else 0
        canvas[:, small.shape[1] :] = canvas[:, small.shape[1] - 1 : small.shape[1]] if small.shape[1] else 0
        found = _best_alignment(_cell_scores(canvas))
        if found[0] > best[0]:
            best = found
    agreement, bit_scores, shift = best
    word = 0
    for score in bit_scores:
        word = (word << 1) | int(score > 0)
    unsure = np.argsort(np.abs(bit_scores))[:UNSURE_BITS]
    for flips in range(2**UNSURE_BITS):  # flips = 0 first: the word as decoded
        candidate = word
        for k, bit in enumerate(unsure):
            if flips >> k & 1:
                candidate ^= 1 << (BITS - 1 - int(bit))
        watermark_id, crc = candidate >> CRC_BITS, candidate & 0xFFFF
        if crc16(watermark_id) == crc:
            return Reading(True, watermark_id, word, agreement, shift, flipped=bin(flips).count("1"))
    return Reading(False, None, word, agreement, shift, too_small=min(image.size) < MIN_SIDE)


def read_frames(frames: list[Image.Image]) -> Reading:
    """The watermark of a video's frames, read in their mean: the fixed mark adds up while moving pictures,
    palettes and compression noise blur away."""
    mean = np.mean([np.asarray(f.convert("L"), dtype=np.float32) for f in frames], axis=0)
    return read(Image.fromarray(np.round(mean).astype(np.uint8)))
