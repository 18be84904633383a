"""nin: the d2l chapter "Network in Network" as one spec and three framework modules.

`nin.spec` holds the architecture as data; `nin.backends.get_backend(name)` gives the module
for one chapter tab (torch, mxnet, tensorflow), each with the d2l API the chapter uses.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
