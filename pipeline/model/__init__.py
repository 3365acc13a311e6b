"""The model: the EfficientNet family table, loading weights and checkpoints, costs, ImageNet labels, hub weights."""
