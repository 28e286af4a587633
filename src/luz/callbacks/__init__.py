"""Built-in callbacks. Pass instances in ``fit(callbacks=[...])``."""

from luz.callbacks.amp import MixedPrecision
from luz.callbacks.base import Callback, callback
from luz.callbacks.checkpoint import KeepBestModel, ModelCheckpoint
from luz.callbacks.defaults import Interrupt, Metrics, Profile, TrainValid
from luz.callbacks.early_stopping import EarlyStopping
from luz.callbacks.gradient_accumulation import GradientAccumulation
from luz.callbacks.gradient_clip import GradientClip
from luz.callbacks.loggers import CSVLogger, TensorBoard
from luz.callbacks.lr_monitor import LRMonitor
from luz.callbacks.lr_scheduler import LRScheduler
from luz.callbacks.mixup import Mixup, MixupLoss, MixupTarget, mixup
from luz.callbacks.mlflow_logger import MLflowLogger
from luz.callbacks.monitor import MonitorCallback
from luz.callbacks.progress import Progress
from luz.callbacks.resume import AutoResume, ResumeFromCheckpoint
from luz.callbacks.terminate_on_nan import NaNGuard, TerminateOnNaN
from luz.callbacks.wandb_logger import WandbLogger

__all__ = [
    "AutoResume",
    "CSVLogger",
    "Callback",
    "EarlyStopping",
    "GradientAccumulation",
    "GradientClip",
    "Interrupt",
    "KeepBestModel",
    "LRMonitor",
    "LRScheduler",
    "MLflowLogger",
    "Metrics",
    "MixedPrecision",
    "Mixup",
    "MixupLoss",
    "MixupTarget",
    "ModelCheckpoint",
    "MonitorCallback",
    "NaNGuard",
    "Profile",
    "Progress",
    "ResumeFromCheckpoint",
    "TensorBoard",
    "TerminateOnNaN",
    "TrainValid",
    "WandbLogger",
    "callback",
    "mixup",
]
