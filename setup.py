"""Packaging; the metadata lives in setup.cfg.

The SQL migrations sit at the top of the repository (``migrations/``) and
ship inside the wheel as ``pulsed/migrations``.
"""

from setuptools import find_packages, setup

setup(
    packages=[
        *find_packages(
            include=[
                "pulsed",
                "pulsed.*",
                "pulse_client",
                "pulse_client.*",
                "pulse_ops",
                "pulse_ops.*",
                "pulse_web",
                "pulse_web.*",
            ]
        ),
        "pulsed.migrations",
    ],
    package_dir={"pulsed.migrations": "migrations"},
)
