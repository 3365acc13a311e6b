"""Device-side code: preprocessing, latency measurement, runners' common parts.

Everything in this package imports only numpy, OpenCV and (inside functions) a
target runtime, because boards carry no PyTorch or NNCF.
"""
