"""Schedulers by name. Each entry: diffusers class, extra config, and the sampler name other
diffusion tools write in their ``parameters`` text (so PNG info readers show the familiar name)."""

from __future__ import annotations

from ..errors import InvalidArgumentError

SCHEDULERS = {
    "ddim": ("DDIMScheduler", {}, "DDIM"),  # the paper's sampler and faceid's default
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}, "PLMS"),
    "euler": ("EulerDiscreteScheduler", {}, "Euler"),
    "euler-a": ("EulerAncestralDiscreteScheduler", {}, "Euler a"),
    "heun": ("HeunDiscreteScheduler", {}, "Heun"),
    "dpm++2m": ("DPMSolverMultistepScheduler", {}, "DPM++ 2M"),
    "dpm++2m-karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}, "DPM++ 2M Karras"),
    "dpm++sde": ("DPMSolverSinglestepScheduler", {}, "DPM++ SDE"),
    "unipc": ("UniPCMultistepScheduler", {}, "UniPC"),
    "ddpm": ("DDPMScheduler", {}, "DDPM"),
}


def check_scheduler(name: str) -> str:
    if name not in SCHEDULERS:
        raise InvalidArgumentError(f"unknown scheduler '{name}'", f"use one of: {', '.join(SCHEDULERS)}")
    return name


def make_scheduler(name: str, base_config):
    """A new scheduler of kind ``name`` from a pipeline's scheduler config."""
    import diffusers

    class_name, extra, _ = SCHEDULERS[check_scheduler(name)]
    return getattr(diffusers, class_name).from_config(base_config, **extra)


def sampler_label(name: str) -> str:
    return SCHEDULERS[name][2]
