"""Install and remove gitexp's git hooks without ever overwriting someone else's.

``install``: a ``pre-push`` that is not ours is renamed ``pre-push.gitexp-chained`` and our
script runs it first (same arguments, same stdin; its refusal stands). ``uninstall`` removes
only our script and puts the chained hook back. The hooks directory is git's own
(``git rev-parse --git-path hooks``: ``core.hooksPath`` is honoured).
"""
from __future__ import annotations

import os
import shlex
import sys
from typing import Optional

from ..errors import BadInput
from ..repo import Repo

MARKER = "# gitexp pre-push hook"
CHAINED = "pre-push.gitexp-chained"

SCRIPT = """#!/bin/sh
{marker}: checks the free disk of a run target before a push to it.
# Installed by `git exp hooks install`; `git exp hooks uninstall` removes it and puts back the
# hook it chains. `git push --no-verify` skips it.
gitexp_python={python}
chained="$(dirname -- "$0")/{chained}"
input=$(mktemp "${{TMPDIR:-/tmp}}/gitexp-pre-push.XXXXXX") || exit 1
trap 'rm -f -- "$input"' EXIT
cat > "$input"
if [ -x "$chained" ]; then
    "$chained" "$@" < "$input" || exit $?
fi
if [ -x "$gitexp_python" ]; then
    "$gitexp_python" -m gitexp _hook pre-push "$@" < "$input" || exit $?
else
    echo "gitexp pre-push hook: $gitexp_python is gone, no disk check made (run git exp hooks install again)" >&2
fi
exit 0
"""


def hooks_dir(repo: Repo) -> str:
    path = repo.out(["rev-parse", "--git-path", "hooks"]).strip()
    return path if os.path.isabs(path) else os.path.join(repo.root, path)


def is_ours(path: str) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return MARKER in handle.read(4096)
    except OSError:
        return False


def install(repo: Repo, python: Optional[str] = None) -> str:
    folder = hooks_dir(repo)
    os.makedirs(folder, exist_ok=True)
    hook, chained = os.path.join(folder, "pre-push"), os.path.join(folder, CHAINED)
    said = f"installed the gitexp pre-push hook in {hook}"
    if os.path.lexists(hook) and not is_ours(hook):
        if os.path.lexists(chained):
            raise BadInput(f"{hook} is not gitexp's and {chained} exists already; nothing was changed",
                           f"merge them by hand, or move {chained} away")
        os.rename(hook, chained)
        said += f"; it runs your previous hook first (now {chained})"
    text = SCRIPT.format(marker=MARKER, python=shlex.quote(python or sys.executable), chained=CHAINED)
    tmp = hook + ".gitexp-tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, 0o755)
    os.replace(tmp, hook)
    return said


def uninstall(repo: Repo) -> str:
    folder = hooks_dir(repo)
    hook, chained = os.path.join(folder, "pre-push"), os.path.join(folder, CHAINED)
    if not is_ours(hook):
        raise BadInput(f"no gitexp pre-push hook in {folder}; nothing was changed")
    os.unlink(hook)
    if os.path.lexists(chained):
        os.rename(chained, hook)
        return f"removed the gitexp pre-push hook; your previous hook is back at {hook}"
    return f"removed the gitexp pre-push hook from {folder}"
