"""humilis layer plugin: our layers as ``layer_type``s, the way humilis lets other teams reuse layers.

humilis looks up ``layer_type: letgo-<name>`` through the ``humilis.layers`` entry points declared in
``pyproject.toml``; each returns the folder of one layer. Our own environment uses the same entry points, so
what another team installs is exactly what we deploy. The folders are ``layers/<name>/`` in a checkout (or an
editable install) and ``letgo/layers/<name>/`` in an installed wheel (``setup.py`` maps them there): the
installed copy wins when present. Kept free of imports beyond the standard library so it loads inside humilis's
own virtualenv.
"""
from pathlib import Path

_HERE = Path(__file__).resolve()
INSTALLED = _HERE.parents[1] / "layers"   # site-packages/letgo/layers (a wheel)
CHECKOUT = _HERE.parents[2] / "layers"    # <repository>/layers
LAYERS_DIR = INSTALLED if INSTALLED.is_dir() else CHECKOUT


def _path(name: str):
    def layer_path() -> str:
        return str(LAYERS_DIR / name)

    layer_path.__name__ = name.replace("-", "_")
    return layer_path


vpc = _path("vpc")
storage = _path("storage")
kinesis = _path("kinesis")
statistics = _path("statistics")
aurora = _path("aurora")
redshift = _path("redshift")
jupyterhub = _path("jupyterhub")
elasticsearch = _path("elasticsearch")
api_gateway = _path("api-gateway")
beanstalk = _path("beanstalk")
batch = _path("batch")
search_indexer = _path("search-indexer")
model_validator = _path("model-validator")
kcl_consumer = _path("kcl-consumer")
