"""The project's exceptions: each message names the field or path, the bad value, and the fix."""


class SamprivacyError(ValueError):
    """Base class for every error that samprivacy raises on bad input; the CLI prints it and exits 2."""


class ConfigError(SamprivacyError):
    """A hyperparameter or option is invalid (unknown name, out of range, NaN)."""


class DataError(SamprivacyError):
    """A dataset file is missing or malformed; the message names the path, the expected format and the source."""


class TrainingDiverged(RuntimeError):
    """Training produced a non-finite loss; carries the epoch where it happened."""

    def __init__(self, epoch: int, loss: float):
        self.epoch, self.loss = epoch, loss
        super().__init__(
            f"training diverged at epoch {epoch}: mean training loss is {loss}; "
            "lower the learning rate, rho or lam, or lower xi (1 + lam - xi must stay positive)"
        )
