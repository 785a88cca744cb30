"""A user's pooling with two options, as the docs show it: the contract test copies this file into a user folder."""

from embedexp.model.pooling import Pooling, weighted_average


class PowerMeanPooling(Pooling):
    """Signed power mean of the token states: power 1 is the mean, larger powers lean towards the largest values."""

    def __init__(self, power: float = 2.0, exclude_prompt: bool = False) -> None:
        super().__init__(exclude_prompt)
        self.power = power

    def pool(self, hidden, mask, attention=None):
        powered = hidden.sign() * hidden.abs().pow(self.power)
        mean = weighted_average(powered, mask)
        return mean.sign() * mean.abs().pow(1 / self.power)
