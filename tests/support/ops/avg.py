from support.strategies import same_window, window

PARAMS = {"avg": window(divisor=True) | same_window(divisor=True)}
