"""Host side of the EfficientNet edge deployment pipeline."""


class PipelineError(RuntimeError):
    """A user-facing error: one line that says what is wrong and how to fix it."""
