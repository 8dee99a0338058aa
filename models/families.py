"""The fusion model families, in one registry: a checkpoint's ``model_type``, a model YAML's
``model_type`` and the trainer's adapters all name a family here.

A family is a model class and its config class, imported on first use (a family's module imports only
torch). Adding one is a line in ``FAMILIES``; its model class lists the fields of its output that an
exported graph returns (``OUTPUT_NAMES``, logits first).
"""

from __future__ import annotations

import importlib

# name -> (module, model class, config class)
FAMILIES: dict[str, tuple[str, str, str]] = {
    "cmarr": ("models.cmarr", "CMARR", "CMARRConfig"),
    "cider": ("models.cider", "CIDer", "CIDerConfig"),
}


def family(name: str, where: str = "model_type") -> tuple[type, type]:
    """(model class, config class) of family ``name``; ValueError naming ``where`` for an unknown one."""
    if name not in FAMILIES:
        raise ValueError(f"{where}: model_type must be one of {sorted(FAMILIES)}, got {name!r}")
    module, model_cls, config_cls = FAMILIES[name]
    mod = importlib.import_module(module)
    return getattr(mod, model_cls), getattr(mod, config_cls)


def family_of(model: object) -> str:
    """The family name of a model instance."""
    for name in FAMILIES:
        model_cls, _ = family(name)
        if isinstance(model, model_cls):
            return name
    raise TypeError(f"no model family registered for {type(model).__name__} (models.families.FAMILIES)")
