from support.strategies import same_window, window

PARAMS = {"max": window(dilation=True, nan=True) | same_window(dilation=True, nan=True)}
