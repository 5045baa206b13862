"""Training and evaluation engine: recipes, losses, ``fit``, checkpoints, native-resolution inference.

>>> from irlib.engine import Normalize, fit, get_recipe, predict
>>> history = fit(host, train_set, get_recipe("basicirstd", epochs=10), normalize=Normalize(0.42, 0.13))
>>> probs = predict(host, test_set, normalize=Normalize(0.42, 0.13))

The experiment layer shared by every method is :mod:`irlib.engine.experiment`, the part of their
study configs they share :mod:`irlib.engine.config`; BasicIRSTD's published logs are in
:mod:`irlib.engine.reference`.
"""

from irlib.engine.checkpoint import load_checkpoint, trainable_state
from irlib.engine.distributed import is_main_process
from irlib.engine.evaluate import Evaluation, evaluate_model, iter_predictions, predict
from irlib.engine.history import History
from irlib.engine.init import apply_head_prior
from irlib.engine.losses import (BCELoss, DiceLoss, EdgeOHEMBCELoss, SirstLoss, SoftIoULoss, WarmupLoss, build_loss,
                                 edge_map, list_losses)
from irlib.engine.normalize import Normalize
from irlib.engine.objective import Objective, SupervisedObjective, recipe_loss
from irlib.engine.recipes import RECIPES, Recipe, get_recipe, list_recipes
from irlib.engine.schedule import build_optimizer, build_scheduler
from irlib.engine.trainer import (EpochContext, Hook, NonFiniteLossError, PrintEvery, epoch_batches, epoch_order, fit,
                                  resolve_device)

__all__ = ["BCELoss", "DiceLoss", "EdgeOHEMBCELoss", "EpochContext", "Evaluation", "History", "Hook",
           "NonFiniteLossError", "Normalize", "Objective", "PrintEvery", "RECIPES", "Recipe", "SirstLoss",
           "SoftIoULoss", "SupervisedObjective", "WarmupLoss", "apply_head_prior", "build_loss", "build_optimizer",
           "build_scheduler", "edge_map", "epoch_batches", "epoch_order", "evaluate_model", "fit", "get_recipe",
           "is_main_process", "iter_predictions", "list_losses", "list_recipes", "load_checkpoint", "predict",
           "recipe_loss", "resolve_device", "trainable_state"]
