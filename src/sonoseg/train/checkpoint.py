"""The checkpoint format moved to :mod:`sonoseg.models.checkpoint` (the model file is the models stage's,
so ``models`` never imports ``train``); this name keeps working for callers of the previous release."""

from sonoseg.models.checkpoint import *  # noqa: F401,F403
from sonoseg.models.checkpoint import (  # noqa: F401  (names star-import leaves out or callers use)
    FORMAT, INT8_LEVELS, INT8_STORAGE, VERSION, checkpoint_config, decode_int8_state, decode_stored_weights,
    half_state, int8_state, load_checkpoint, load_model, save_checkpoint, slim_checkpoint,
)
