from setuptools import find_packages, setup

setup(
    name="gitexp",
    version="0.1.0",
    description="Run and track neural-network training experiments as git commits",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["gitexp", "gitexp.*"]),
    python_requires=">=3.9",
    install_requires=[
        "dulwich>=0.20",
        "click>=8.0",
        "PyYAML>=5.3",
        "psutil>=5.6",
        "tabulate>=0.8",
    ],
    extras_require={
        "plot": ["matplotlib"],
        "gpu": ["nvidia-ml-py"],
        "test": ["pytest", "numpy", "aiosmtpd"],
    },
    entry_points={"console_scripts": ["git-exp=gitexp.cli:main"]},
)
