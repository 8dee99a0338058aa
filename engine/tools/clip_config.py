"""Engine configs of an evaluation run: the one built from the command line and each --compare model's."""

from __future__ import annotations

import argparse

from engine.backends import preflight
from engine.config import MODELS, EngineConfig, build_engine_config, engine_shortcuts, resolve_path
from engine.tools.labelled_clips import UsageError


def engine_config(args: argparse.Namespace) -> tuple[EngineConfig, list[str]]:
    """The engine config (same precedence as run_live.py) and the overrides it was built with."""
    if args.config and not resolve_path(args.config).is_file():
        raise UsageError(f"--config {args.config} does not exist")
    config = str(resolve_path(args.config)) if args.config else None
    try:
        overrides = [*args.set, *engine_shortcuts(checkpoint=args.checkpoint, model=args.model)]
        cfg = build_engine_config(config, args.set, checkpoint=args.checkpoint, model=args.model)
        preflight(cfg.backend.name, cfg.backend.device)
    except (ValueError, FileNotFoundError) as e:
        raise UsageError(str(e)) from None
    return cfg, overrides


def compare_config(cfg: EngineConfig, what: str) -> tuple[str, EngineConfig]:
    """The engine config of a ``--compare`` model: a family name (its shipped checkpoint), a path, or
    ``rule=NAME``: the same checkpoint under another fusion rule (``fusion.rule``)."""
    import dataclasses

    from engine.config import FusionRuleConfig
    from engine.stages.fusion import check_checkpoint

    if what.startswith("rule="):
        try:
            return what, dataclasses.replace(cfg, fusion=FusionRuleConfig(what.split("=", 1)[1]))
        except ValueError as e:
            raise UsageError(f"--compare {what}: {e}") from None
    if what in MODELS:
        ckpt, arch = MODELS[what]
    else:
        ckpt, arch = what, cfg.model_config
    other = dataclasses.replace(cfg, checkpoint=ckpt, model_config=arch)
    try:
        check_checkpoint(other)
    except FileNotFoundError as e:
        raise UsageError(f"--compare {what}: {e}") from None
    return what, other
