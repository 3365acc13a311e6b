"""Quantization beyond plain PTQ: quantization-aware training, the accuracy-aware search and layer sensitivity."""
