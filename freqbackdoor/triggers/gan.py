"""GAN-Tri: a trigger made by re-synthesising the whole image through an upsampling generator.

What the paper evaluates (Section 3.2, "GAN-Generated Backdoor Data"): FaceHack (Sarkar et al.,
2020) poisons face images by editing a facial attribute (e.g. a smile) with a facial-attribute
GAN; the paper traces the high-frequency artifacts of such data to the upsampling layers every
GAN generator uses to go from a small latent map to a full image (citing its reference [9] on
frequency-based detection of GAN images; transposed convolutions are also the classic source of
"checkerboard" patterns, Odena et al., Distill 2016).

What is done here, and why it differs: FaceHack's attribute GAN and its training faces are not
available, so no attribute is edited. Instead a small encoder-decoder generator is trained on
the dataset's own training images (``context.images``) to reproduce them: stride-2 convolutions
downsample, **transposed convolutions upsample** back to full size, and a sigmoid gives pixels in
[0, 1]. The loss is L1 reconstruction plus a light non-saturating adversarial term from a small
PatchGAN discriminator (``adversarial_weight``; 0 gives a plain autoencoder), as in
image-to-image GANs. The triggered image is ``G(x)``: the same picture, re-rendered by a GAN
generator. This keeps what the paper's argument rests on (every poisoned pixel comes out of a
transposed-convolution upsampling path, which leaves periodic, high-frequency traces), while
the "semantic" part of FaceHack (the smile) is left out. The poisoned image is therefore a
near-copy of the clean one whose difference is mostly those artifacts plus some blur. (On
224-px photographs with the defaults: PSNR about 25 dB; the mean log-DCT magnitude drops a
little over most of the spectrum, from the blur, but rises by about 0.7 in the highest band
``u, v >= 200``, the checkerboard.)

Training runs on random ``crop`` x ``crop`` patches, which keeps a 224-px dataset fast on a
CPU; the network is fully convolutional and is applied to whole images afterwards (inputs are
padded to a multiple of its downsampling factor and the output cropped back).
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError
from ..frequency.dct import resolve_device
from ..logs import progress
from .registry import (
    GeneratorWeights,
    Trigger,
    TriggerContext,
    merge_options,
    register_generator,
    register_trigger,
)

log = logging.getLogger(__name__)

ARCH = "upconv_autoencoder"
DEFAULTS = {
    "steps": 300,
    "batch_size": 16,
    "lr": 0.002,
    "crop": 64,
    "width": 16,
    "depth": 2,
    "adversarial_weight": 0.01,
    "target_label": 0,
}


@register_generator(ARCH)
class UpconvGenerator(nn.Module):
    """Encoder (stride-2 convolutions) and decoder (stride-2 transposed convolutions).

    ``width`` channels at full resolution, doubled at each of the ``depth`` downsamplings; the
    decoder mirrors that with ``ConvTranspose2d(kernel 3, stride 2)`` layers, the last of which
    writes the RGB output. A 3-tap kernel at stride 2 overlaps unevenly (Odena et al., 2016),
    which is the textbook source of checkerboard artifacts: that is intended here. Input and
    output are float ``N x 3 x H x W`` in [0, 1] of any size.
    """

    def __init__(self, width: int = 16, depth: int = 2, channels: int = 3) -> None:
        super().__init__()
        if width < 1 or depth < 1 or channels < 1:
            raise ValueError(
                f"width, depth and channels must be >= 1, got {width}, {depth}, {channels}"
            )
        self.factor = 2**depth
        widths = [width * 2**level for level in range(depth + 1)]
        encoder: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
        for level in range(depth):
            encoder += [nn.Conv2d(widths[level], widths[level + 1], 4, stride=2, padding=1)]
            encoder += [nn.ReLU()]
        decoder: list[nn.Module] = []
        for level in reversed(range(depth)):
            out = widths[level] if level > 0 else channels
            decoder += [
                nn.ConvTranspose2d(widths[level + 1], out, 3, stride=2, padding=1, output_padding=1)
            ]
            if level > 0:
                decoder += [nn.ReLU()]
        self.encoder = nn.Sequential(*encoder)
        self.decoder = nn.Sequential(*decoder)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        pad_h, pad_w = -height % self.factor, -width % self.factor
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        y = torch.sigmoid(self.decoder(self.encoder(x)))
        return y[..., :height, :width]


class PatchDiscriminator(nn.Module):
    """A small PatchGAN critic: one real/fake logit per overlapping patch (about 22 px)."""

    def __init__(self, width: int = 16, channels: int = 3) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * width, 1, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def train_generator(
    images: np.ndarray,
    steps: int = DEFAULTS["steps"],
    batch_size: int = DEFAULTS["batch_size"],
    lr: float = DEFAULTS["lr"],
    crop: int = DEFAULTS["crop"],
    width: int = DEFAULTS["width"],
    depth: int = DEFAULTS["depth"],
    adversarial_weight: float = DEFAULTS["adversarial_weight"],
    seed: int = 0,
    device: str = "cpu",
) -> tuple[GeneratorWeights, dict]:
    """Train :class:`UpconvGenerator` to reproduce uint8 ``N x H x W x 3`` images.

    Each step draws ``batch_size`` images and one random ``crop`` x ``crop`` window per image
    (the whole image when it is smaller), minimises ``L1(G(x), x) + adversarial_weight *
    BCE(D(G(x)), real)`` with Adam, and updates the PatchGAN ``D`` on real vs generated crops.
    Every random draw (weights, batches, windows) comes from ``seed``. Returns the weights and
    a record with the per-step L1 loss.
    """
    if images.ndim != 4 or images.shape[3] != 3 or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 N x H x W x 3 images, got {images.dtype} {images.shape}")
    target = resolve_device(device)
    rng = np.random.default_rng(seed)
    height, width_px = images.shape[1:3]
    crop_h, crop_w = min(crop, height), min(crop, width_px)
    data = torch.from_numpy(np.ascontiguousarray(images)).to(target)  # uint8, moved once
    config = {"width": int(width), "depth": int(depth), "channels": 3}
    with torch.random.fork_rng(devices=[]):  # seeded initialisation without touching global state
        torch.manual_seed(seed)
        generator = UpconvGenerator(**config).to(target)
        critic = PatchDiscriminator(int(width)).to(target) if adversarial_weight > 0 else None
    g_opt = torch.optim.Adam(generator.parameters(), lr=lr, betas=(0.5, 0.999))
    d_opt = (
        torch.optim.Adam(critic.parameters(), lr=lr, betas=(0.5, 0.999))
        if critic is not None
        else None
    )
    l1_history: list[float] = []
    d_history: list[float] = []
    generator.train()
    for _ in progress(range(steps), "gan_tri", total=steps):
        rows = rng.integers(0, images.shape[0], size=batch_size)
        tops = rng.integers(0, height - crop_h + 1, size=batch_size)
        lefts = rng.integers(0, width_px - crop_w + 1, size=batch_size)
        batch = torch.stack(
            [
                data[r, t : t + crop_h, c : c + crop_w]
                for r, t, c in zip(rows.tolist(), tops.tolist(), lefts.tolist(), strict=True)
            ]
        )
        real = batch.permute(0, 3, 1, 2).float().div_(255.0)
        fake = generator(real)
        l1 = F.l1_loss(fake, real)
        loss = l1
        if critic is not None:
            logits = critic(fake)
            loss = loss + adversarial_weight * F.binary_cross_entropy_with_logits(
                logits, torch.ones_like(logits)
            )
        g_opt.zero_grad(set_to_none=True)
        loss.backward()
        g_opt.step()
        l1_history.append(float(l1.detach()))
        if critic is not None:
            real_logits, fake_logits = critic(real), critic(fake.detach())
            d_loss = 0.5 * (
                F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
            )
            d_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            d_opt.step()
            d_history.append(float(d_loss.detach()))
    record = {
        "loss_history": [round(v, 6) for v in l1_history],
        "discriminator_loss_history": [round(v, 6) for v in d_history],
        "crop_px": [crop_h, crop_w],
    }
    return GeneratorWeights.from_module(ARCH, config, generator), record


def psnr(clean: np.ndarray, other: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB between two uint8 batches (inf when identical)."""
    mse = float(np.mean((clean.astype(np.float64) - other.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


@register_trigger(
    "gan_tri",
    "FaceHack (Sarkar et al., 2020, arXiv:2006.11623), GAN-synthesised facial attributes; "
    "here a transposed-convolution generator trained on the dataset re-synthesises each image",
    needs=("images",),
)
def gan_tri(height: int, width: int, options: dict, context: TriggerContext) -> Trigger:
    """Train the upsampling generator on ``context.images``; the trigger is ``x -> G(x)``.

    Options: ``steps``, ``batch_size``, ``lr`` (Adam), ``crop`` (training window side in px),
    ``width`` (generator and critic channels at full resolution), ``depth`` (number of
    2x down/upsamplings), ``adversarial_weight`` (0 = plain L1 autoencoder), ``target_label``.
    Trains on ``context.device`` with ``context.seed``; the meta records the L1 loss per step
    and the PSNR of ``G(x)`` against ``x`` on the training images (after rounding to uint8).
    See the module docstring for how this departs from FaceHack.
    """
    opts = merge_options(options, "gan_tri", DEFAULTS)
    for key in ("steps", "batch_size", "crop", "width", "depth"):
        if not isinstance(opts[key], int) or isinstance(opts[key], bool) or opts[key] < 1:
            raise ConfigError(
                f"triggers.gan_tri.{key} must be a positive integer, got {opts[key]!r}"
            )
    numbers = (opts["lr"], opts["adversarial_weight"])
    if not all(isinstance(v, int | float) for v in numbers) or opts["lr"] <= 0 or numbers[1] < 0:
        raise ConfigError(
            f"triggers.gan_tri: lr must be > 0 and adversarial_weight >= 0, got {opts['lr']!r}, "
            f"{opts['adversarial_weight']!r}"
        )
    images = np.asarray(context.images)
    if images.ndim != 4 or images.shape[1:] != (height, width, 3) or images.dtype != np.uint8:
        raise ConfigError(
            f"triggers.gan_tri: training images must be uint8 N x {height} x {width} x 3, "
            f"got {images.dtype} {images.shape}"
        )
    device = str(resolve_device(context.device))
    started = time.perf_counter()
    weights, record = train_generator(
        images,
        steps=int(opts["steps"]),
        batch_size=int(opts["batch_size"]),
        lr=float(opts["lr"]),
        crop=int(opts["crop"]),
        width=int(opts["width"]),
        depth=int(opts["depth"]),
        adversarial_weight=float(opts["adversarial_weight"]),
        seed=int(context.seed),
        device=device,
    )
    train_seconds = time.perf_counter() - started
    zeros = np.zeros((height, width, 3), dtype=np.float32)
    trigger = Trigger(
        name="gan_tri",
        pattern=zeros,
        mask=zeros,
        mode="generator",
        target_label=int(opts["target_label"]),
        generator=weights,
        device=device,
    )
    triggered = trigger.apply(images)
    quality = psnr(images, triggered)
    trigger.meta.update(
        {
            "options": {key: opts[key] for key in DEFAULTS},
            "arch": ARCH,
            "train_images": int(images.shape[0]),
            "train_device": device,
            "seed": int(context.seed),
            "psnr_db": round(quality, 3),
            "final_l1": record["loss_history"][-1],
            **record,
            "deviation": "FaceHack's facial-attribute GAN is not available: images are "
            "re-synthesised by a transposed-convolution autoencoder (L1 + PatchGAN) trained "
            "on the dataset, so no facial attribute is edited",
        }
    )
    trigger.device = "cpu"  # applying later defaults to the CPU, like every trigger
    log.info(
        "gan_tri: %d steps on %d images (%s) in %.1f s, final L1 %.4f, PSNR %.2f dB",
        opts["steps"],
        images.shape[0],
        device,
        train_seconds,
        record["loss_history"][-1],
        quality,
    )
    return trigger
