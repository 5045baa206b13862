"""FDEP (Yu et al.): frozen VFM semantics fused into any SIRST host during training only."""

from irlib.fdep.coisd import CoISD
from irlib.fdep.objective import CoISDObjective
from irlib.fdep.samf import SAMF, SAMFStack

__all__ = ["CoISD", "CoISDObjective", "SAMF", "SAMFStack"]
