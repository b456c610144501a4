"""The published data some tests read: $GENEMASK_DATA, else shared/data beside the checkout (see data_docs/)."""
import pytest
from genemask.genome import published_data_dir

def published(*parts:str):
    "The path of a published file or folder; the calling test is skipped when it is not there."
    d = published_data_dir()
    if d is None or not d.joinpath(*parts).exists():
        pytest.skip(f"published data {'/'.join(parts)} not found (set GENEMASK_DATA; see data_docs/fewshot_human.md)")
    return d.joinpath(*parts)
