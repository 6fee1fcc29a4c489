from support.strategies import window

PARAMS = {"avg": window(divisor=True)}
