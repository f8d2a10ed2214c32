"""edgekd: distil a vision model for the edge and ship it with a fairness card.

Importing the package imports nothing heavy: device-side commands never load torch.
"""

__version__ = "0.1.0"
