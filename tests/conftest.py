import os

# A stray hub call must fail fast instead of hanging: everything in tests is offline.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# A bug on a page raises (AppTest's `at.exception`, the browser's exception box) instead of the one-line "internal
# error" users see (app.py); tests/test_app_errors.py checks that line with it unset.
os.environ.setdefault("MVA_DEBUG", "1")
# A token in the developer's environment would make every app test ask for it (mva_core.access); tests that need
# one set it themselves.
os.environ.pop("MVA_AUTH_TOKEN", None)
# Interference results are cached per machine (mva_core.interference_cache); a test run starts from an empty cache of
# its own, so that the page's computation is exercised, not a result a previous run left.
os.environ.setdefault("MVA_INTERFERENCE_CACHE", __import__("tempfile").mkdtemp(prefix="mva-interference-"))

# AppTest runs no server: the app under test is bound as the shipped .streamlit/config.toml binds it (loopback),
# whichever directory pytest starts in (that file is read from the current directory). Tests of the exposed app
# (tests/test_access.py) set another address themselves.
from streamlit import config as _st_config  # noqa: E402

if _st_config.get_option("server.address") is None:
    _st_config.set_option("server.address", "localhost")
