"""Training and evaluation engine: losses, ``fit``, checkpoints, native-resolution inference.

>>> from irlib.engine import Normalize, fit, predict
>>> history = fit(host, train_set, epochs=10, normalize=Normalize(0.42, 0.13), loss="softiou")
>>> probs = predict(host, test_set, normalize=Normalize(0.42, 0.13))
"""

from irlib.engine.checkpoint import load_checkpoint, trainable_state
from irlib.engine.evaluate import evaluate_model, iter_predictions, predict
from irlib.engine.history import History
from irlib.engine.losses import (BCELoss, DiceLoss, EdgeOHEMBCELoss, SirstLoss, SoftIoULoss, build_loss,
                                 edge_map, list_losses)
from irlib.engine.normalize import Normalize
from irlib.engine.objective import Objective, SupervisedObjective
from irlib.engine.schedule import build_scheduler
from irlib.engine.trainer import NonFiniteLossError, epoch_order, fit, resolve_device

__all__ = ["BCELoss", "DiceLoss", "EdgeOHEMBCELoss", "History", "NonFiniteLossError", "Normalize",
           "Objective", "SirstLoss", "SoftIoULoss", "SupervisedObjective", "build_loss", "build_scheduler",
           "edge_map", "epoch_order", "evaluate_model", "fit", "iter_predictions", "list_losses",
           "load_checkpoint", "predict", "resolve_device", "trainable_state"]
