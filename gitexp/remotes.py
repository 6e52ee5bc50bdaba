"""The older name of :mod:`gitexp.targets`: run targets were called remotes, which git's remotes
made confusing. Kept so code that imports it goes on working."""
from .targets import Target as Remote  # noqa: F401
from .targets import add_target as add_remote  # noqa: F401
from .targets import get_target as get_remote  # noqa: F401
from .targets import load_targets as load_remotes  # noqa: F401
from .targets import remove_target as remove_remote  # noqa: F401
