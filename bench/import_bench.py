"""Benchmark: ``labelhub import-labels`` of a 100,000-row CSV, timed against one raw Label Studio import
call of the same tasks, in the same run, on a private Label Studio (tests.labelstudio).

The CSV has 2 rows per url (a whole-image concept and a box), so 100,000 rows are 50,000 tasks with
one prediction each (a Choices item and a RectangleLabels region). Printed figures:

- parse + check of the CSV (pandas), alone;
- the whole command (parse, check, state, batches of --batch-size tasks per call);
- one raw ``POST /api/projects/{id}/import`` of the same 50,000 task payloads into a second project;
- the same command run again (every url already imported: no Label Studio import call).

Usage:
    python -m bench.import_bench [--rows 100000] [--batch-size 1000]
"""
from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

CONFIG = ('<View><Image name="image" value="$image"/>'
          '<Choices name="kind" toName="image"><Choice value="Bag"/><Choice value="Coat"/>'
          '<Choice value="Dress"/></Choices>'
          '<RectangleLabels name="box" toName="image"><Label value="Bag"/><Label value="Sneaker"/></RectangleLabels>'
          '</View>')
CLASSES = ("Bag", "Coat", "Dress")


def write_csv(path: Path, rows: int) -> int:
    """Write a labels CSV of ``rows`` rows (2 per url); return the number of urls."""
    urls = rows // 2
    with open(path, "w") as fh:
        fh.write("url,pos_concepts,neg_concepts,metadata,left_col,top_row,right_col,bottom_row\n")
        for i in range(urls):
            url = f"https://images.example.test/fmnist/{i:06d}.png"
            box = "Bag" if i % 2 else "Sneaker"
            # the negative concept is neither the positive one nor the box's label (a concept both positive and
            # negative for one url is refused, and the url held back)
            negative = next(c for c in CLASSES[i % 3 + 1:] + CLASSES if c not in (CLASSES[i % 3], box))
            fh.write(f'{url},{CLASSES[i % 3]},{negative},"{{""batch"": {i // 1000}}}",,,,\n')
            left = (i % 50) / 100
            fh.write(f"{url},{box},,,{left},0.1,{left + 0.25},0.85\n")
    return urls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args()

    from label_studio_sdk import LabelStudio

    from labelhub.sync.labels.csv_file import read_labels_csv
    from labelhub.sync.labels.cli import import_labels
    from labelhub.sync.labels.parsed import ProjectLabels, UrlResolver
    from labelhub.sync.labels.importer import build_labeled_task
    from tests.labelstudio import LabelStudioServer, ensure_template

    ensure_template()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        csv = tmp / "labels.csv"
        urls = write_csv(csv, args.rows)
        with LabelStudioServer(tmp / "ls") as server:
            client = LabelStudio(base_url=server.url, api_key=server.personal_token, timeout=3600)
            ours = client.projects.create(title="labelhub import-labels", label_config=CONFIG)
            raw = client.projects.create(title="raw import", label_config=CONFIG)
            labels = ProjectLabels.from_config(CONFIG)

            t0 = time.perf_counter()
            parsed = read_labels_csv(csv, labels, UrlResolver())
            parse_s = time.perf_counter() - t0
            assert not parsed.errors and len(parsed.tasks) == urls

            def run_command() -> float:
                t = time.perf_counter()
                import_labels.main([str(csv), "--project", str(ours.id), "--state", str(tmp / "state.sqlite3"),
                                 "--batch-size", str(args.batch_size), "--label-studio-url", server.url,
                                 "--label-studio-api-key", server.personal_token, "--log-level", "WARNING"],
                                standalone_mode=False)
                return time.perf_counter() - t

            command_s = run_command()
            logging.getLogger().setLevel(logging.WARNING)
            payloads = [build_labeled_task(t, labels, "predictions", "raw") for t in parsed.tasks]
            t0 = time.perf_counter()
            answer = client.projects.import_tasks(raw.id, request=payloads, return_task_ids=True)
            raw_s = time.perf_counter() - t0
            assert len(answer.task_ids) == urls
            rerun_s = run_command()
            assert client.projects.get(ours.id).task_number == urls

    calls = -(-urls // args.batch_size)
    print(f"\n{args.rows:,} CSV rows → {urls:,} tasks, {parsed.regions:,} regions, predictions inline")
    print(f"  parse + check (pandas)                      {parse_s:8.2f} s")
    print(f"  labelhub import-labels ({calls} calls of {args.batch_size:,})   {command_s:8.2f} s "
          f"({urls / command_s:,.0f} tasks/s)")
    print(f"  one raw Label Studio import call            {raw_s:8.2f} s ({urls / raw_s:,.0f} tasks/s)")
    print(f"  ratio labelhub / raw                        {command_s / raw_s:8.2f}")
    print(f"  re-run (all {urls:,} already imported)       {rerun_s:8.2f} s")


if __name__ == "__main__":
    main()
