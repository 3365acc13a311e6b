"""`python -m pipeline train` (command) and the training loop it and QAT share (loop)."""
