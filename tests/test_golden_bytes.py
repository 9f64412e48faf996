"""The .rsc bytes of a fixed set of photos and settings do not change.

The hashes were recorded before the encoder's settings became one value
(settings.EncodeSettings).  The models are named, so that a new default model
does not change them; a change that does changed the format's bytes, which
only a new format version may do (version 6: an empty mask is one byte).
Each case has two digests: the file in the layout of versions 4-6 (the
sections unchanged since they were recorded) and as written, version 7."""
import hashlib

import numpy as np
import pytest
import skimage.data

from rescodec import codec

from conftest import as_legacy


def _images():
    return {"chelsea": skimage.data.chelsea()[:96, :128], "coffee": skimage.data.coffee()[100:196, 200:328],
            "gray": skimage.data.camera()[:64, :80],
            "noise": np.random.default_rng(7).integers(0, 256, (40, 56, 3), dtype=np.uint8)}


CASES = [
    ("chelsea", 2, {"model": "rescodec-x2-v8"}, "1ca028b2aeef9cbb", "1bbab1993cd59e87"),
    ("chelsea", 4, {"model": "rescodec-x4-v7"}, "bdf6c33b9335e7f7", "ae094633e1d16cba"),
    ("coffee", 8, {"model": "rescodec-x8-v5"}, "629ceb601ef346de", "8f0f4a9580a82566"),
    ("coffee", 16, {"model": "rescodec-x16-v4"}, "85672eaba3494ab1", "5397f47aacd842fe"),
    ("gray", 4, {"model": "rescodec-x4-v7"}, "41c32bc1210f97d8", "6d81cca15fc4cd73"),   # version 6: its mask is empty
    ("noise", 2, {"model": "rescodec-x2-v8", "bits": 2, "lr_step": 3, "lr_space": "rgb", "temperature": 0.5, "seed": 9},
     "12bc4b71c935a89e", "4671b68524388bc3"),
    ("coffee", 4, {"model": "rescodec-x4-v7", "threshold": 60.0, "norm": 1, "sigma": 1.5, "lr_step": 5}, "1c9965f4650cbaf7", "c28b0a54f0a470aa"),
    ("chelsea", 4, {"model": "rescodec-x4-v7", "refine": 3}, "f15e912c5071e3a2", "76c610861ca8cc62"),
    ("chelsea", 2, {"model": "rescodec-x2-v8", "refine": 2, "refine_method": "hcd"}, "3789aca0ee938a09", "94000440a26e2199"),
]


@pytest.mark.parametrize("name,scale,options,legacy,digest", CASES,
                         ids=[f"{c[0]}-x{c[1]}-{i}" for i, c in enumerate(CASES)])
def test_rsc_bytes_unchanged(name, scale, options, legacy, digest):
    data = codec.encode(_images()[name], scale, **options)
    assert hashlib.sha256(as_legacy(data)).hexdigest()[:16] == legacy
    assert hashlib.sha256(data).hexdigest()[:16] == digest
