"""Adapter lookup hook: ``get_adapter("cmarr_mssd")`` imports this module; training.mssd registers it."""

import training.mssd  # noqa: F401  (registers "cider" and "cmarr_mssd")
