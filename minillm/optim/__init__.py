"""Optimizers, learning-rate schedules and gradient clipping (API of ``torch.optim``).

    optimizer.py  Optimizer: param groups, per-parameter state, state_dict
    sgd.py        SGD (momentum, Nesterov, L2 weight decay)
    adam.py       Adam (Kingma & Ba, 2015), AdamW (Loshchilov & Hutter, 2019)
    adafactor.py  Adafactor (Shazeer & Stern, 2018), T5's optimizer
    schedules.py  LambdaLR and get_scheduler("linear" | "cosine" | "inverse_sqrt" | ...)
    clip.py       clip_grad_norm_
"""
from .adafactor import Adafactor
from .adam import Adam, AdamW
from .clip import clip_grad_norm_
from .optimizer import Optimizer
from .schedules import SCHEDULE_NAMES, LambdaLR, get_scheduler
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "Adafactor", "LambdaLR", "get_scheduler",
           "SCHEDULE_NAMES", "clip_grad_norm_"]
