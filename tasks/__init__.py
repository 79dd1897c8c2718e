"""Domain logic of radialog-instruct, grouped by pipeline stage (sources, labeling, generation,
instruct, augment, storage, quality, release). Plain typed functions over Arrow/pandas tables;
the Prefect flows in ``flows/`` only orchestrate them."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("radialog-instruct")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"

PIPELINE_VERSION = __version__
