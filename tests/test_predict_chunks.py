"""A prediction job sizes each ``predict`` call by the decoded pixels of the one before (found by an audit of region
projects' jobs, stop 56: 64 phone photos in one call took a job process from 110 MiB to 3.1 GiB)."""
from __future__ import annotations

import base64
import io
from types import SimpleNamespace

from PIL import Image

from labelhub.backend.embedding_cache import EmbeddingCache
from labelhub.backend.jobs import FIRST_CHUNK, PREDICT_CHUNK, PREDICT_PIXELS, chunk_size
from labelhub.backend.media import MediaFetcher
from labelhub.backend.models.project import ProjectModel
from labelhub.backend.settings import Settings


def test_the_next_call_holds_about_the_pixel_budget_and_never_more_than_the_chunk():
    assert chunk_size(None) == FIRST_CHUNK < PREDICT_CHUNK
    assert chunk_size(0.0) == PREDICT_CHUNK  # texts, cached embeddings, a model that does not say
    assert chunk_size(28 * 28) == PREDICT_CHUNK
    photos = chunk_size(4000 * 3000)
    assert photos * 4000 * 3000 <= PREDICT_PIXELS < (photos + 1) * 4000 * 3000
    assert chunk_size(20_000 * 20_000) == 1


def test_the_default_model_says_the_pixels_its_last_predict_decoded_in_this_thread():
    config = ("<View><Image name='image' value='$image'/><Rectangle name='bbox' toName='image'/>"
              "<TextArea name='transcription' toName='image' perRegion='true'/></View>")
    model = ProjectModel(project_id="1.1", label_config=config)
    model.backend = SimpleNamespace(fetcher=MediaFetcher(Settings()), settings=Settings(), embeddings=EmbeddingCache(0))

    def png(width: int, height: int) -> str:
        out = io.BytesIO()
        Image.new("RGB", (width, height), "white").save(out, format="PNG")
        return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()

    assert model.decoded_pixels == 0
    model.predict([{"id": 1, "data": {"image": png(300, 200)}}, {"id": 2, "data": {"image": png(100, 50)}},
                   {"id": 3, "data": {"image": "data:image/png;base64,bm90IGFuIGltYWdl"}}])
    assert model.decoded_pixels == 300 * 200 + 100 * 50  # the unreadable image counts nothing
