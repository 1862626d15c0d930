"""Models: T5 (encoder-decoder) and its Hugging Face file format."""
from .configuration_t5 import T5Config
from .t5 import Seq2SeqOutput, T5ForConditionalGeneration

__all__ = ["T5Config", "T5ForConditionalGeneration", "Seq2SeqOutput"]
