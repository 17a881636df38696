"""genlab: deep generative models from the lectures, as tested software.

Time convention everywhere: t = 0 is the source (noise), t = 1 the data, and
x_t = alpha_t x_1 + sigma_t x_0.
"""

from genlab._version import __version__

__all__ = ["__version__"]
