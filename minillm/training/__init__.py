"""Training: the loop and the parts it is made of.

    trainer.py     Trainer: batches -> loss -> backward -> (all-reduce) -> clip -> optimizer -> schedule
    arguments.py   TrainingArguments (every knob, validated), TrainResult, NonFiniteLossError
    log.py         TrainingLog: log.jsonl and the loss curve
    checkpoint.py  save/load a resumable checkpoint (safetensors + JSON, written atomically)
    resume.py      what a resumed run may change, and the report of what it changed
    interrupt.py   Ctrl-C (and SIGTERM) finish the step, save a checkpoint, then stop

The Trainer's evaluation (eval loss, metrics on generated text) is ``evaluation/held_out.py``.
"""
from .arguments import NonFiniteLossError, TrainingArguments, TrainResult
from .checkpoint import load_checkpoint, save_checkpoint
from .trainer import Trainer

__all__ = ["Trainer", "TrainingArguments", "TrainResult", "NonFiniteLossError", "save_checkpoint",
           "load_checkpoint"]
