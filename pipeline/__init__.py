"""Host side of the EfficientNet edge deployment pipeline."""

from edge.errors import UserError as PipelineError  # one error type for host and board  # noqa: F401
