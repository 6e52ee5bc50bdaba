"""gitexp: every experiment a git commit, its results in git notes.

The Python API for training scripts lives here and imports nothing heavy::

    import gitexp
    gitexp.log(step=epoch, val_err=0.12, loss=0.4)
    gitexp.checkpoint("out/model.pt", step=epoch)

Under ``git exp run`` the points go to the experiment's metrics file; outside gitexp these
calls do nothing (unless GITEXP_METRICS_FILE is set by hand), so a script runs unchanged.
"""
from .api import checkpoint, flush, log, log_norms, output_dir, params, resume_from

__all__ = ["log", "log_norms", "checkpoint", "flush", "params", "output_dir", "resume_from"]
__version__ = "0.1.0"
