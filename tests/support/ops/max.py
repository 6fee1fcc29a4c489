from support.strategies import window

PARAMS = {"max": window(dilation=True, nan=True)}
