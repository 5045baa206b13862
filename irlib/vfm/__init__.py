"""Frozen visual encoders behind one registry: ``create_encoder(name, weights=None, **kwargs)``.

``encoder(raw)`` with raw images ``(B, 1 or 3, H, W)`` in [0, 1] returns an
:class:`EncoderOutput`; each encoder converts gray to RGB, normalises and resizes on its own.
Encoders never train and nothing ever downloads weights (see :mod:`irlib.vfm.weights`).
"""

from irlib.vfm import cnn, sam, vit  # noqa: F401  (registers the encoders)
from irlib.vfm.base import EncoderOutput, FrozenEncoder, evenly_spaced_blocks
from irlib.vfm.preprocess import fit_input
from irlib.vfm.registry import create_encoder, list_encoders, register_encoder
from irlib.vfm.weights import ENV_VAR, weights_dirs

__all__ = ["ENV_VAR", "EncoderOutput", "FrozenEncoder", "create_encoder", "evenly_spaced_blocks",
           "fit_input", "list_encoders", "register_encoder", "weights_dirs"]
