import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import cb_helpers  # noqa: E402


@pytest.fixture(scope="session")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("fit")
    trainer, model = cb_helpers.fit(root)
    return root, trainer, model
