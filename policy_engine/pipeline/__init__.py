"""The only package that wires media, models, analysis, policy and the store together.

``analysis``: one video to coverage (no database). ``judging``: stored scans to decisions
(re-evaluation, dry runs). ``scan``: files to stored scans, decisions and reports.
"""

from policy_engine.pipeline.analysis import (
    AnalysisOptions,
    AnalysisResult,
    analyze_video,
    decide,
    rescore,
)

__all__ = ["AnalysisOptions", "AnalysisResult", "analyze_video", "decide", "rescore"]
