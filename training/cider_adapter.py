"""Adapter lookup hook: ``get_adapter("cider")`` imports this module; training.mssd registers it."""

import training.mssd  # noqa: F401  (registers "cider" and "cmarr_mssd")
