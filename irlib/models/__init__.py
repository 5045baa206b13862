"""Host SIRST networks behind one interface (:class:`SirstHost`) and a registry.

>>> from irlib.models import create_model, list_models
>>> host = create_model("acm")          # logits (B, 1, H, W) for (B, 1, H, W) inputs
"""

from irlib.models.base import HostFeatures, HostOutput, SirstHost
from irlib.models.complexity import count_flops, count_macs, count_params
from irlib.models.registry import (create_model, list_models, load_host, load_weights, read_host_meta,
                                   register_model, save_host)

# importing the architecture files registers them
from irlib.models.acm import ACM
from irlib.models.alcnet import ALCNet
from irlib.models.dnanet import DNANet
from irlib.models.mshnet import MSHNet
from irlib.models.unet import UNet
from irlib.simir import student as _simir_student  # noqa: F401,E402  (registers SimIR's student hosts)

__all__ = ["ACM", "ALCNet", "DNANet", "HostFeatures", "HostOutput", "MSHNet", "SirstHost", "UNet",
           "count_flops", "count_macs", "count_params", "create_model", "list_models", "load_host",
           "load_weights", "read_host_meta", "register_model", "save_host"]
