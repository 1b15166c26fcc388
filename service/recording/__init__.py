"""Request path, side branch: finished requests written to traffic files, and recent prompts kept for review."""

from .prompt_samples import PromptSamples
from .recorder import Recorder

__all__ = ["PromptSamples", "Recorder"]
