"""Positive generators: paraphrase (chat LM), back-translation, noise, dropout, and their composition."""

from embedexp.synthesis.generators.backtranslate import BackTranslateGenerator, InstructTranslator, Seq2SeqTranslator
from embedexp.synthesis.generators.base import GenerationStats, Generator, OutputCheck, clean_output
from embedexp.synthesis.generators.chat import ChatLM
from embedexp.synthesis.generators.paraphrase import ParaphraseGenerator
from embedexp.synthesis.generators.simple import Compose, DropoutGenerator, NoiseGenerator

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
