from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
# Top-level handlers/, config/ and hooks/ (docs/design.md, "Layout") ship inside the package.
SHIPPED = ["fleetq.handlers", "fleetq.skeleton.config", "fleetq.skeleton.hooks"]

setup(
    name="fleetq",
    version="0.1.0",
    description=(
        "Run AI coding agents and build/test jobs across a small fleet of machines, with a git repo as the queue."
    ),
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=[*find_packages(include=["fleetq", "fleetq.*"]), *SHIPPED],
    package_dir={
        "fleetq.handlers": "handlers",
        "fleetq.skeleton.config": "config",
        "fleetq.skeleton.hooks": "hooks",
    },
    package_data={
        "fleetq.skeleton.config": ["*.yaml", "*.service", "*.plist", "*.cron"],
        "fleetq.skeleton.hooks": ["*"],
    },
    install_requires=[
        "GitPython>=3.1.40",
        "watchdog>=4.0",
        "ruamel.yaml>=0.18",
        "ruamel.yaml.clib>=0.2.7; platform_python_implementation == 'CPython'",  # libyaml speed for reads
        "click>=8.1",
        "tabulate>=0.9",
        "filelock>=3.12",
        "psutil>=5.9",  # CPU, memory and load for heartbeats and placement
        "cronsim>=2.5",  # cron expressions for schedules (small, no dependencies, DST-correct)
        "mcp>=2.3,<3",  # `fleetq mcp`: the official MCP SDK (2.x: mcp.server.lowlevel.Server with on_* handlers)
    ],
    extras_require={
        # setuptools and wheel: tests/packaging builds and installs fleetq each way, offline.
        "test": [
            "pytest>=7",
            "pytest-timeout>=2.2",
            "pytest-xdist>=3.5",
            "hypothesis>=6.100",
            "setuptools>=64",
            "wheel",
        ],
        "lint": ["ruff==0.17.6", "mypy==2.4.1", "types-psutil", "types-tabulate"],
    },
    entry_points={"console_scripts": ["fleetq=fleetq.cli.app:main"]},
)
