"""The names faceid accepts, each list in one place. A light module: the CLI reads it at start-up
for option checks and shell completion, so it imports nothing."""

#: identity methods (``--method``)
METHODS = ("m2", "clip-image", "faceclip", "none")
#: the methods ``faceid train`` trains (model.method)
TRAINABLE_METHODS = ("m2", "clip-image", "faceclip")
#: faceclip's negative branches (``--text-negative``, evaluate's ``--negative-branch``): the
#: release's (a black face through the encoder, no prefix) or the base's text encoders alone
FACECLIP_NEGATIVE_BRANCHES = ("release", "text")
#: where FaceCLIP's face token goes: on the prefix's face word (the release's), or on the subject
#: that S* stands for, the prompt read as the base reads it (for encoders trained that way)
FACECLIP_FACE_PLACEMENTS = ("prefix", "subject")
#: face backends (``--backend``); auto: world for the world's models, else insightface when a pack
#: is found, else dlib
FACE_BACKENDS = ("auto", "insightface", "dlib", "world")
INSIGHTFACE_PACKS = ("antelopev2", "buffalo_l")
#: built in code with seeded random weights (CI and smoke runs)
TINY_MODELS = ("tiny", "tiny-xl")
#: the miniature identity world's trained models, shipped with faceid
WORLD_MODELS = ("world", "world-xl")
#: aliases of the real bases → Hugging Face repo ids
MODEL_ALIASES = {
    "sd21-base": "stabilityai/stable-diffusion-2-1-base",  # the DreamIdentity paper's base
    "sd15": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
}
#: FaceCLIP's public release (``--method faceclip``): where it is looked for, its files, its licence
FACECLIP_RELEASE = {"repo": "ByteDance/FaceCLIP", "encoder": "face_clip_encoder.pt", "unet": "unet.pt",
                    "license": "CC-BY-NC-4.0 (non-commercial use only)"}
KNOWN_MODELS = TINY_MODELS + WORLD_MODELS + tuple(MODEL_ALIASES)
#: weight precisions (``--dtype``); auto: bf16 (fp16 without bf16 support) on CUDA, fp32 on the CPU
DTYPES = ("auto", "fp32", "fp16", "bf16")
#: samplers (``--scheduler``); faceid_cli.models.schedulers maps each to its diffusers class
SCHEDULER_NAMES = ("ddim", "pndm", "euler", "euler-a", "heun", "dpm++2m", "dpm++2m-karras", "dpm++sde", "unipc",
                   "ddpm")
#: what generation uses when nobody says otherwise: the library (GenerationSettings, the pipeline),
#: generate's and batch's options and batch's job defaults all read this one dict
GENERATION_DEFAULTS = {
    "model": "tiny", "method": "m2", "num_images": 1, "steps": 30, "guidance": 7.5, "scheduler": "ddim",
    "negative_prompt": "", "batch_size": 1, "face_index": 0, "identity_token": "S*", "append_identity": False,
    # the share of steps drawn before the identity enters (FaceIDPipeline.render)
    "identity_start": 0.0,
    # faceclip: the negative prompt through the base's text encoders, not the release's branch
    "text_negative": False,
}
#: the range of each numeric generation setting (None: unbounded); generate's and batch's options
#: and batch's job fields all check these
GENERATION_LIMITS = {
    "num_images": (1, None), "seed": (0, 2**63 - 1), "steps": (1, 1000), "guidance": (0.0, None),
    "height": (8, None), "width": (8, None), "face_index": (0, None), "identity_start": (0.0, 1.0),
}
