"""Positive generators: paraphrase (chat LM), back-translation, noise, dropout, and their composition."""

from embedexp.synth.generators.backtranslate import BackTranslateGenerator, InstructTranslator, Seq2SeqTranslator
from embedexp.synth.generators.base import GenerationStats, Generator, OutputCheck, clean_output
from embedexp.synth.generators.chat import ChatLM
from embedexp.synth.generators.paraphrase import ParaphraseGenerator
from embedexp.synth.generators.simple import Compose, DropoutGenerator, NoiseGenerator

__all__ = [
    "BackTranslateGenerator",
    "ChatLM",
    "Compose",
    "DropoutGenerator",
    "GenerationStats",
    "Generator",
    "InstructTranslator",
    "NoiseGenerator",
    "OutputCheck",
    "ParaphraseGenerator",
    "Seq2SeqTranslator",
    "clean_output",
]
