"""The calibration set (the mission's card: pipeline/, targets/, calibration/, tests/).

- `sets`: choosing it (stratified from a labelled folder, an unlabelled folder, frames captured on the board with their
  held-out split; random data only by name) and preprocessing it exactly as validation does;
- `cache`: the set on disk in its stage's folder;
- `adapters`: one per consumer (NNCF's Dataset, ONNX Runtime's reader, LiteRT's samples).

It reads images through edge/ and imports nothing from pipeline/ or targets/ (tests/test_architecture.py). This file
imports nothing: a module that needs only the name below does not take the choosing code into its stage's source.
"""

RANDOM = "random"  # CALIB=random: random data, only when asked for by name, and flagged in the report
