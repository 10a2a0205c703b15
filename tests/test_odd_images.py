"""Images read as browsers show them (found by an audit of region projects' jobs, stop 56): a 16-bit grayscale PNG
was clipped to white by Pillow's conversion, and an image over Pillow's 89 megapixels printed its
``DecompressionBombWarning`` on stderr before the backend's own refusal."""
from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image

from labelhub.backend.embedders import decode_image
from labelhub.backend.errors import MediaFetchError


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_a_16_bit_png_is_read_by_its_high_byte_as_a_browser_shows_it():
    ramp = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (4, 1))
    data = _png(Image.fromarray(ramp))
    assert Image.open(io.BytesIO(data)).mode in ("I;16", "I")
    read = np.asarray(decode_image(data))
    assert read.shape == (4, 256, 3)
    assert np.array_equal(read[0, :, 0], (ramp[0] >> 8).astype(np.uint8))  # not 255 from the 256th value on
    assert read[0, 128, 0] == 128 and (read[..., 0] == read[..., 2]).all()


def test_an_8_bit_image_held_as_32_bit_integers_is_kept_as_it_is():
    values = np.arange(0, 256, dtype=np.int32).reshape(16, 16)
    image = Image.fromarray(values, "I")
    out = io.BytesIO()
    image.save(out, format="TIFF")
    assert np.array_equal(np.asarray(decode_image(out.getvalue()))[..., 0], values.astype(np.uint8))


def test_an_image_over_pillows_bomb_limit_is_refused_in_one_line_without_its_warning():
    data = _png(Image.new("L", (10000, 9000)))  # 90 megapixels: over Pillow's warning threshold, under its error
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(MediaFetchError, match=r"the image is too large \(10000x9000\)"):
            decode_image(data)
