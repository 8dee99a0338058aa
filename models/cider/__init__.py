"""CIDer (Causal Inference Distiller): WSAM + MCT model and the MACI plug-in. Imports only torch."""

from .configuration_cider import CIDerConfig, MSSDConfig
from .maci import MACI, MACIConfig, MACIOutput, counterfactual_token_ids, select_bias_words
from .modeling_cider import CIDer, CIDerOutput

__all__ = [
    "MACI",
    "CIDer",
    "CIDerConfig",
    "CIDerOutput",
    "MACIConfig",
    "MACIOutput",
    "MSSDConfig",
    "counterfactual_token_ids",
    "select_bias_words",
]
