"""Benchmark of the transcription head (not a test): character error rate and seconds per page.

Run: ``python bench/ocr_bench.py [--pages 20] [--dpi 150] [--engine auto|rapidocr|rapidocr-onnxruntime|all]``.

Pages: the GNU Libtasn1 manual, ``/usr/share/doc/libtasn1-doc/libtasn1.pdf`` from Debian's package
``libtasn1-doc`` (36 US-letter pages typeset by Texinfo: prose, function prototypes, a licence), rendered
with ``pypdfium2`` (PyPI) at ``--dpi``. The truth is the PDF's own text layer (pypdfium2's text
extraction). The chosen pages are those with the most words, whole (no margin crop: the running header is text
too), leaving out the table of contents and the two-column index: their dot leaders (``. . . .``) are
hundreds of characters of the PDF's text that an OCR reads as a few dots or nothing.

Each page goes through :class:`~labelhub.backend.models.transcription.TranscriptionHead` (the
``<TextArea>`` without ``perRegion``: the whole page's text) as the backend runs it. Printed per page:
wall seconds, CPU seconds of this process (ONNX Runtime's threads included: on a shared machine the two
differ), text rows read, characters and the character error rate (CER): the Levenshtein distance
(``rapidfuzz``) between the OCR text and the truth divided by the truth's length, both with whitespace
runs collapsed to one space. The overall CER divides the summed distances by the summed lengths. A second
figure (``CER typo``) also maps typographic characters both sides (NFKC, curly quotes to ASCII quotes,
dashes to ``-``, PDFium's end-of-line hyphen U+FFFE to ``-``), which an OCR reading printed glyphs cannot
tell apart.

Learning curves: the issue asks each head for figures after 20, 100 and 500 annotations. The OCR head
does not learn (``learns = False``): its figures are the same at every point, and are printed as such.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PDF = Path("/usr/share/doc/libtasn1-doc/libtasn1.pdf")
PACKAGE = "libtasn1-doc"
CONFIG = ('<View><Image name="image" value="$image"/>'
          '<TextArea name="transcription" toName="image" rows="10"/></View>')
_TYPO = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-",
                       "\ufffe": "-", "\u00ad": "-"})


def collapse(text: str) -> str:
    """Whitespace runs to one space, ends stripped."""
    return " ".join(text.split())


def typographic(text: str) -> str:
    """:func:`collapse` after NFKC and mapping quotes, dashes and PDFium's line-end hyphen to ASCII."""
    return collapse(unicodedata.normalize("NFKC", text).translate(_TYPO))


class StubHost:
    """The little of the project model a head uses here: the settings."""

    def __init__(self, threads: int):
        from labelhub.backend.settings import Settings

        self.settings = Settings(torch_threads=threads)


def choose_pages(pdf, count: int) -> list[int]:
    """Indices of the ``count`` pages with the most words, leaving out pages with dot leaders."""
    texts = [pdf[i].get_textpage().get_text_range() for i in range(len(pdf))]
    body = [(len(t.split()), i) for i, t in enumerate(texts) if ". . . ." not in t]
    return sorted(i for _, i in sorted(body, reverse=True)[:count])


def run(engine: str, pages: list[int], pdf, dpi: int, threads: int) -> dict:
    from rapidfuzz.distance import Levenshtein

    from labelhub.backend.models.heads import TaskInput
    from labelhub.backend.models.transcription import TranscriptionHead, load_engine
    from labelhub.label_config import control_specs

    control = control_specs(CONFIG)[0]
    head = TranscriptionHead(control, StubHost(threads), {"ocr_engine": engine}, [control])
    t0 = time.perf_counter()
    head.warmup()
    label = load_engine(engine, threads).label
    print(f"\n== {label}: loaded and warmed up in {time.perf_counter() - t0:.2f} s ({threads or 'default'} "
          f"ONNX Runtime threads)")
    print(f"{'page':>4} {'wall s':>7} {'cpu s':>6} {'rows':>5} {'chars':>6} {'CER':>7} {'CER typo':>9}")
    rows = []
    for i in pages:
        page = pdf[i]
        image = page.render(scale=dpi / 72).to_pil().convert("RGB")
        truth = page.get_textpage().get_text_range()
        task = TaskInput(task={"id": i, "data": {"image": f"page-{i + 1}.png"}}, value=f"page-{i + 1}", media=image)
        w0, c0 = time.perf_counter(), time.process_time()
        [regions] = head.predict([task], None)
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        text = regions[0]["value"]["text"][0] if regions else ""
        plain = (Levenshtein.distance(collapse(text), collapse(truth)), len(collapse(truth)))
        typo = (Levenshtein.distance(typographic(text), typographic(truth)), len(typographic(truth)))
        rows.append({"page": i + 1, "wall": wall, "cpu": cpu, "plain": plain, "typo": typo, "rows": text.count("\n") + 1})
        print(f"{i + 1:>4} {wall:>7.2f} {cpu:>6.2f} {rows[-1]['rows']:>5} {plain[1]:>6} {plain[0] / plain[1]:>7.2%} "
              f"{typo[0] / typo[1]:>9.2%}", flush=True)
    cer = sum(r["plain"][0] for r in rows) / sum(r["plain"][1] for r in rows)
    cer_typo = sum(r["typo"][0] for r in rows) / sum(r["typo"][1] for r in rows)
    walls, cpus = [r["wall"] for r in rows], [r["cpu"] for r in rows]
    print(f"overall: CER {cer:.2%}, CER typo {cer_typo:.2%} over {sum(r['plain'][1] for r in rows)} characters; "
          f"seconds per page wall median {statistics.median(walls):.2f} (max {max(walls):.2f}), "
          f"cpu median {statistics.median(cpus):.2f}")
    return {"label": label, "cer": cer, "cer_typo": cer_typo, "wall": statistics.median(walls),
            "cpu": statistics.median(cpus)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=20, help="pages to read (default 20)")
    parser.add_argument("--dpi", type=int, default=150, help="rendering resolution (default 150)")
    parser.add_argument("--engine", default="auto",
                        help="auto, rapidocr, rapidocr-onnxruntime, or all (each installed engine)")
    parser.add_argument("--threads", type=int, default=1,
                        help="ONNX Runtime threads (default 1; the backend's LABELHUB_TORCH_THREADS default is 2)")
    args = parser.parse_args()

    if not PDF.exists():
        print(f"{PDF} is missing: apt-get install {PACKAGE}", file=sys.stderr)
        return 2
    import pypdfium2 as pdfium

    from labelhub.backend.models.transcription import available_engines

    engines = available_engines() if args.engine == "all" else [args.engine]
    if not engines or (args.engine != "all" and args.engine != "auto" and args.engine not in available_engines()):
        print("no OCR engine installed: pip install rapidocr onnxruntime (or rapidocr-onnxruntime)", file=sys.stderr)
        return 2
    pdf = pdfium.PdfDocument(str(PDF))
    pages = choose_pages(pdf, args.pages)
    load = os.getloadavg()[0]
    print(f"{PDF} (Debian package {PACKAGE}), {len(pdf)} pages; reading pages {[p + 1 for p in pages]} at "
          f"{args.dpi} dpi; load average {load:.1f} on {os.cpu_count()} cores")
    results = [run(engine, pages, pdf, args.dpi, args.threads) for engine in engines]

    print("\nlearning curve (the OCR head does not learn: the same figures at every point)")
    print(f"{'engine':<28} {'annotations':>11} {'CER':>7} {'CER typo':>9} {'wall s/page':>11}")
    for r in results:
        for n in (20, 100, 500):
            print(f"{r['label']:<28} {n:>11} {r['cer']:>7.2%} {r['cer_typo']:>9.2%} {r['wall']:>11.2f}")
    worst = max(r["cer"] for r in results)
    print(f"\nCER <= 10%: {'yes' if worst <= 0.10 else 'NO'} (worst {worst:.2%})")
    return 0 if worst <= 0.10 else 1


if __name__ == "__main__":
    sys.exit(main())
