"""CM-ARR (Cross-Modal Alignment, Reconstruction and Refinement). Imports only torch."""

from .configuration_cmarr import FUSION_RULES, CMARRConfig, LossWeights
from .losses import cmarr_loss, supcon_loss, symmetric_info_nce, w2_distance
from .modeling_cmarr import CMARR, CMARROutput

__all__ = ["CMARR", "FUSION_RULES", "CMARRConfig", "CMARROutput", "LossWeights", "cmarr_loss", "supcon_loss",
           "symmetric_info_nce", "w2_distance"]
