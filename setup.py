import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent


def read_version() -> str:
    """The one definition of the version is ``__version__`` in gitexp/__init__.py (read, not
    imported: installing must not need gitexp's dependencies)."""
    text = (HERE / "gitexp" / "__init__.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "([^"]+)"$', text, re.MULTILINE)
    if not match:
        raise RuntimeError("gitexp/__init__.py does not define __version__ = \"...\"")
    return match.group(1)


setup(
    name="gitexp",
    version=read_version(),
    description="Run and track neural-network training experiments as git commits",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["gitexp", "gitexp.*"]),
    # git exp ui's page, script and uPlot (MIT, from the npm registry): served from the package,
    # never from a CDN, so the dashboard works offline and on a cluster's login node.
    # git exp completion SHELL prints gitexp/completion/git-exp.<shell>.
    package_data={"gitexp.ui": ["static/*"], "gitexp": ["completion/git-exp.*"]},
    include_package_data=True,
    python_requires=">=3.9",
    install_requires=[
        "dulwich>=0.20",
        "click>=8.0",
        "PyYAML>=5.3",
        "psutil>=5.6",
        "tabulate>=0.8",
        # terminal plots (git exp plot): the 5.x series is pure Python, 64 KB, no dependencies;
        # 6.x moved to a compiled kernel and a new API.
        "plotext>=5.2,<6",
    ],
    extras_require={
        "plot": ["matplotlib"],  # git exp plot -o x.png/.svg/.pdf
        "gpu": ["nvidia-ml-py"],  # per-GPU use and memory in the resource samples (gitexp.monitor)
        "top": ["rich"],  # git exp top's live view
        # git exp ui runs on the standard library's http.server: the extra installs nothing
        # and exists so that `pip install 'gitexp[ui]'` keeps working if that ever changes.
        "ui": [],
        "xlsx": ["openpyxl"],  # git exp run --sweep-file experiments.xlsx
        "profile": ["py-spy"],  # git exp run --profile: samples the program from outside
        # ruff, mypy and import-linter pinned: the README's test command runs them, and a new
        # release's new rules must not fail CI by surprise.
        "test": ["pytest", "numpy", "aiosmtpd", "matplotlib", "rich", "ruff==0.17.6", "mypy==2.4.1",
                 "import-linter==2.16",
                 "types-PyYAML", "types-psutil", "types-tabulate",
                 # issue 21: .xlsx sweep files, TensorBoard files written by a real writer, --profile
                 "openpyxl", "tensorboardX", "py-spy"],
    },
    entry_points={"console_scripts": ["git-exp=gitexp.cli:main"]},
    # `git exp --help` is `git help exp`, which runs `man git-exp`: man looks in <prefix>/share/man
    # beside each <prefix>/bin on the PATH (a virtualenv, ~/.local for --user). Editable installs
    # skip data_files: scripts/bootstrap.sh installs the page itself (python -m gitexp.manpage).
    # bash-completion looks in <prefix>/share/bash-completion/completions beside each <prefix>/bin
    # on the PATH, and git's completion loads git-exp from there when you complete `git exp`.
    data_files=[("share/man/man1", ["man/git-exp.1"]),
                ("share/bash-completion/completions", ["gitexp/completion/git-exp.bash"])],
)
