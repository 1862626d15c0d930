"""Training: the loop and the parts it is made of.

    trainer.py     Trainer: batches -> loss -> backward -> clip -> optimizer step -> schedule
    arguments.py   TrainingArguments (every knob, validated), TrainResult, NonFiniteLossError
    log.py         TrainingLog: log.jsonl and the loss curve
    checkpoint.py  save/load a resumable checkpoint (safetensors + JSON, written atomically)
    evaluation.py  loss and generation-based scores on held-out data during training
"""
from .arguments import NonFiniteLossError, TrainingArguments, TrainResult
from .checkpoint import load_checkpoint, save_checkpoint
from .trainer import Trainer

__all__ = ["Trainer", "TrainingArguments", "TrainResult", "NonFiniteLossError", "save_checkpoint",
           "load_checkpoint"]
