"""`python -m pipeline choose`: the largest model that meets a latency budget on the board."""
