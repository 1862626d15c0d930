"""Layers and the Module system."""
from . import init
from .layers import Dropout, Embedding, LayerNorm, Linear, RMSNorm
from .module import Module, ModuleList, Parameter

__all__ = ["Module", "ModuleList", "Parameter", "Linear", "Embedding", "RMSNorm", "LayerNorm",
           "Dropout", "init"]
