"""Image folders: labelled class folders and their checks, the embedded sample photos, Fashion-MNIST as folders."""
