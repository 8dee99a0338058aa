"""CM-ARR (Cross-Modal Alignment, Reconstruction and Refinement). Imports only torch."""

from .configuration_cmarr import CMARRConfig, LossWeights
from .losses import cmarr_loss, supcon_loss, symmetric_info_nce, w2_distance
from .modeling_cmarr import CMARR, CMARROutput

__all__ = ["CMARR", "CMARRConfig", "CMARROutput", "LossWeights", "cmarr_loss", "supcon_loss",
           "symmetric_info_nce", "w2_distance"]
