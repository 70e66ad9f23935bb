"""faceid: identity-preserving image generation from one photo and a prompt.

Importing the package is cheap; the face stack and the diffusion models load on first use.
"""

__version__ = "0.1.0"
