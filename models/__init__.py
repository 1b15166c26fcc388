"""The shipped isolation forest, `default.skops` with its model card `default.json`: package
data, so an installed wheel finds them as a checkout does (`bash models/train_default.sh`
rewrites both)."""

from importlib import resources
from pathlib import Path

# A path without suffix, as `distillguard train --out` takes it; `pip install` unpacks the
# wheel, so the package's files are plain files (skops and the card are read by path).
DEFAULT_MODEL = Path(str(resources.files(__name__).joinpath("default")))
