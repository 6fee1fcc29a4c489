"""CNN backbones: ``features(x) -> Tensor[N, C, h, w]``."""
