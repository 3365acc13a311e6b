"""Host side of the EfficientNet edge deployment pipeline."""
import os

from edge.errors import UserError as PipelineError  # one error type for host and board  # noqa: F401

# NNCF compiles its C++ extension on first use and gives up after 60 s by default, which a busy
# 2-core machine misses; `make setup` builds it once (python -m pipeline toolchain), and a rebuild
# after an upgrade gets the time it needs.
os.environ.setdefault("NNCF_EXTENSION_LOAD_TIMEOUT", "900")
