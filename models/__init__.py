"""Classifiers that take images of any size: backbones, pooling heads, training, export and the model registry."""
