"""The Python API the CLI (and tests, and other programs) call: settings in, objects out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from policy_engine.analysis.photosensitivity import PseSettings
from policy_engine.analysis.photosensitivity.settings import AREA_MODES
from policy_engine.analysis.scenes import DETECTORS, SceneSettings
from policy_engine.config import Settings
from policy_engine.errors import ConfigError
from policy_engine.media.framing import Framing
from policy_engine.media.timecode import parse_duration
from policy_engine.media.video import SamplingMode, SamplingSpec
from policy_engine.models.clip import ClipEmbedder
from policy_engine.pipeline import AnalysisOptions
from policy_engine.pipeline.detection import DetectorSet
from policy_engine.pipeline.xclip_windows import XClipRun
from policy_engine.policy.model import RuleSet

# rule-set sampling keys -> settings fields
_RULESET_SAMPLING = {"fps": "fps", "mode": "sampling", "framing": "framing", "interval": "interval"}


def _choice(enum: type, value: str, flag: str) -> object:
    try:
        return enum(value.lower())
    except ValueError:
        allowed = " | ".join(m.value for m in enum)
        raise ConfigError(f"{flag} {value!r}: choose one of {allowed}") from None


def analysis_options(
    settings: Settings,
    *,
    start: str | float | None = None,
    end: str | float | None = None,
    max_frames: int | None = None,
) -> AnalysisOptions:
    """Sampling, framing and interval options from settings and window flags."""
    try:
        spec = SamplingSpec(
            mode=_choice(SamplingMode, settings.sampling, "--sampling"),  # type: ignore[arg-type]
            fps=settings.fps,
            start=parse_duration(start) if start is not None else 0.0,
            end=parse_duration(end) if end is not None else None,
            max_frames=max_frames,
            fast_decode=settings.fast_decode,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if settings.fast_decode and (settings.pse or settings.scenes):
        needs = " and ".join(
            what
            for what, on in (
                ("the photosensitivity check", settings.pse),
                ("scene detection", settings.scenes),
            )
            if on
        )
        raise ConfigError(
            f"fast_decode skips frames that {needs} must see: turn them off for such scans"
            " (--no-pse; scenes = false in the settings file or POLICY_ENGINE_SCENES=false),"
            " or leave fast_decode off"
        )
    if settings.interval <= 0:
        raise ConfigError(f"--interval must be positive, got {settings.interval}")
    return AnalysisOptions(
        sampling=spec,
        framing=_choice(Framing, settings.framing, "--framing"),  # type: ignore[arg-type]
        interval_seconds=settings.interval,
        photosensitivity=pse_settings(settings) if settings.pse else None,
        scenes=scene_settings(settings) if settings.scenes else None,
        keep_revealed=settings.reveal_hidden_evidence,
    )


def scene_settings(settings: Settings) -> SceneSettings:
    """Scene detection's settings, checked."""
    if settings.scene_detector not in DETECTORS:
        raise ConfigError(
            f"scene_detector {settings.scene_detector!r}: choose one of {' | '.join(DETECTORS)}"
        )
    if settings.scene_threshold < 0:
        raise ConfigError(
            f"scene_threshold must be positive (0: the detector's default), got"
            f" {settings.scene_threshold}"
        )
    return SceneSettings(
        detector=settings.scene_detector, threshold=settings.scene_threshold or None
    )


def pse_settings(settings: Settings) -> PseSettings:
    """The photosensitivity check's settings, checked."""
    if settings.pse_area not in AREA_MODES:
        raise ConfigError(f"pse_area {settings.pse_area!r}: choose one of {' | '.join(AREA_MODES)}")
    if not settings.pse_display_peak > 0:
        raise ConfigError(
            f"pse_display_peak must be a positive number of cd/m², got {settings.pse_display_peak}"
        )
    return PseSettings(area=settings.pse_area, display_peak=settings.pse_display_peak)


def load_embedder(settings: Settings) -> ClipEmbedder:
    """The CLIP embedder the settings name, on the device they ask for."""
    if settings.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {settings.batch_size}")
    return ClipEmbedder.load(
        settings.model,
        device=settings.device,
        dtype=settings.dtype,
        batch_size=settings.batch_size,
        runtime=settings.runtime,
    )


def load_detectors(settings: Settings, rulesets: Sequence[RuleSet]) -> DetectorSet | None:
    """The object detectors the rule sets' detector categories name, loaded; None when
    they name none."""
    from policy_engine.models.provider import ModelProvider
    from policy_engine.pipeline.detection import detector_specs

    specs = detector_specs(rulesets)
    if not specs:
        return None
    return DetectorSet.for_specs(specs, ModelProvider.from_settings(settings).detectors(specs))


def load_xclip(settings: Settings, rulesets: Sequence[RuleSet]) -> XClipRun | None:
    """X-CLIP with every prompt the rule sets' X-CLIP categories need; None without any."""
    from policy_engine.models.provider import ModelProvider
    from policy_engine.pipeline.xclip_windows import xclip_prompts

    prompts = xclip_prompts(rulesets)
    if not prompts:
        return None
    return XClipRun(ModelProvider.from_settings(settings).xclip(), prompts)


def settings_for_ruleset(settings: Settings, ruleset: RuleSet) -> Settings:
    """The rule set's sampling applies where the user did not choose (file, env or flag):
    an editor's ``sampling: {fps: 4}`` is part of what the rules mean."""
    chosen = {
        field: value
        for key, field in _RULESET_SAMPLING.items()
        if (value := ruleset.sampling.get(key)) is not None
        and settings.source_of(field) == "default"
    }
    sources = {**settings.sources, **{f: f"rule set {ruleset.name}" for f in chosen}}
    return replace(settings, **chosen, sources=sources)
