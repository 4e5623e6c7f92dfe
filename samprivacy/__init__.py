"""samprivacy: map the accuracy / membership-privacy trade-off of sharpness-aware training."""

__version__ = "0.1.0"
