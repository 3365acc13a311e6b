"""The source half of a stage's cache key: the digest of the code it runs (pipeline.sources), so a new recipe redoes
what the old one made and a reworded report redoes only the report and the bundle that carries its words."""
from __future__ import annotations

from pathlib import Path

from pipeline import sources
from pipeline.stages import STAGES

EDGE = Path(__file__).resolve().parents[2] / "edge"
# the bundle carries all of edge/: its key follows every module there, the report and bundle writers and what every
# stage reads (the model's labels come through the context)
BUNDLE_SOURCES = ("pipeline.stages.report", "pipeline.stages.context", "pipeline.ship.bundle", "pipeline.ship.report",
                  *sorted(".".join(p.relative_to(EDGE.parent).with_suffix("").parts) for p in EDGE.rglob("*.py")))


def stage_sources(stage: str, target_module: str | None = None) -> tuple[str, ...]:
    """The modules stage `stage` starts from ("bundle": the bundle's), with the target's module where it calls it."""
    modules = BUNDLE_SOURCES if stage == "bundle" else (STAGES[stage].module, "pipeline.stages.context")
    targeted = stage == "bundle" or STAGES[stage].targeted
    return (*modules, *((target_module,) if targeted and target_module else ()))


def code_digest(stage: str, target=None) -> str:
    """The digest of the source stage `stage` runs (pipeline.sources), for its cache key."""
    return sources.digest(*stage_sources(stage, type(target).__module__ if target is not None else None))
