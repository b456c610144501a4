"""The published data some tests read: $GENEMASK_DATA, else shared/data beside the checkout (see data_docs/)."""
import pytest
from genemask.genome import published_data

def published(*parts:str):
    "The path of a published file or folder; the calling test is skipped when it is not there."
    try: return published_data(*parts)
    except FileNotFoundError as e: pytest.skip(str(e))
