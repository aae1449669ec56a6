"""Hostile annotation and prediction files (#13): bounded memory and time, one-line errors naming the file.

Each file is small to moderate on disk and built to cost time, memory or a
traceback when read naively: JSON nested 100,000 deep, integers past Python's
4300-digit limit, XML entity expansion ("billion laughs"), XML nested 100,000
deep, a box of a million numbers.  The command runs in a child process under an
address-space limit and reports its own peak RSS (``VmHWM``) at exit.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

MEM_LIMIT = 1536 << 20   # the child's address space
RSS_BOUND = 400 << 20    # peak resident memory allowed
TIME_BOUND = 60.0        # seconds (a generous bound for a loaded CI machine; the runs take ~1 s)
DEEP = 100_000


def _run_bounded(args: list[str], tmp_path) -> tuple[int, str, int, float]:
    """``cvtool ARGS`` in a child under RLIMIT_AS: (exit code, stderr, peak RSS in bytes, seconds).

    The child writes its own ``VmHWM`` at exit: ``wait4``'s ``ru_maxrss`` would
    include the forking pytest worker's high-water mark.
    """
    hwm = tmp_path / "vmhwm.txt"
    code = ("import atexit, resource, runpy, sys; "
            f"resource.setrlimit(resource.RLIMIT_AS, ({MEM_LIMIT}, {MEM_LIMIT})); "
            "atexit.register(lambda: open(" + repr(str(hwm)) + ", 'w').write("
            "[l for l in open('/proc/self/status') if l.startswith('VmHWM')][0])); "
            f"sys.argv = ['cvtool'] + {args!r}; runpy.run_module('cvtool', run_name='__main__')")
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True, timeout=2 * TIME_BOUND, check=False)
    seconds = time.monotonic() - start
    peak_kib = int(hwm.read_text().split()[1])  # "VmHWM:   123456 kB"
    return proc.returncode, proc.stderr, peak_kib * 1024, seconds


def _gt(tmp_path):
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png", "width": 10, "height": 10}],
                              "annotations": [], "categories": [{"id": 1, "name": "a"}]}))
    return gt


def _voc_folder(tmp_path, xml: str):
    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    (root / "Annotations" / "a.xml").write_text(xml)
    return root


_LAUGHS = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
           + "".join(f'<!ENTITY lol{i} "' + ("&lol;" if i == 1 else f"&lol{i - 1};") * 10 + '">'
                     for i in range(1, 10))
           + ']><annotation><filename>&lol9;</filename></annotation>')
_DEEP_XML = ("<annotation><filename>a.jpg</filename><size><width>10</width><height>10</height>"
             "<depth>3</depth></size>" + "<object>" * DEEP + "</object>" * DEEP + "</annotation>")


def _case(tmp_path, case: str) -> tuple[list[str], str]:
    """(command line, expected message) for one hostile file written under ``tmp_path``."""
    if case == "coco-deep":
        p = tmp_path / "deep.json"
        p.write_text('{"images": ' + "[" * DEEP + "]" * DEEP + ', "annotations": [], "categories": []}')
        return ["prepare", "stats", str(p)], "deep.json: JSON nested too deeply"
    if case == "coco-digits":
        p = tmp_path / "digits.json"
        p.write_text('{"images": [{"id": ' + "9" * 5000 + ', "file_name": "a.png", "width": 10, "height": 10}], '
                     '"annotations": [], "categories": [{"id": 1, "name": "a"}]}')
        return ["prepare", "stats", str(p)], "digits.json: JSON number with too many digits"
    if case == "voc-entities":
        return ["prepare", "stats", str(_voc_folder(tmp_path, _LAUGHS))], "a.xml: refused unsafe XML"
    if case == "voc-deep":
        return ["prepare", "stats", str(_voc_folder(tmp_path, _DEEP_XML))], "a.xml: object 0"
    if case == "jsonl-deep":
        p = tmp_path / "p.jsonl"
        p.write_text('{"file": "a.png", "boxes": ' + "[" * DEEP + "]" * DEEP + "}\n")
        return ["eval", "--gt", str(_gt(tmp_path)), "--pred", str(p)], "p.jsonl:1: JSON nested too deeply"
    if case == "results-digits":
        p = tmp_path / "p.json"
        p.write_text('[{"image_id": ' + "1" * 5000 + ', "category_id": 1, "bbox": [1, 1, 2, 2], "score": 0.5}]')
        return ["eval", "--gt", str(_gt(tmp_path)), "--pred", str(p)], "p.json: JSON number with too many digits"
    if case == "results-long-box":
        p = tmp_path / "p.json"
        p.write_text('[{"image_id": 1, "category_id": 1, "bbox": [' + ",".join(["1"] * 1_000_000)
                     + '], "score": 0.5}]')
        return ["eval", "--gt", str(_gt(tmp_path)), "--pred", str(p)], "p.json"
    raise AssertionError(case)


CASES = ["coco-deep", "coco-digits", "voc-entities", "voc-deep", "jsonl-deep", "results-digits",
         "results-long-box"]


@pytest.mark.parametrize("case", CASES)
def test_hostile_file_is_refused_in_bounded_memory_and_time(tmp_path, case):
    args, message = _case(tmp_path, case)
    rc, err, peak_rss, seconds = _run_bounded(args, tmp_path)
    lines = err.strip().splitlines()
    assert rc == 1, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err
    assert "Traceback" not in err
    assert peak_rss < RSS_BOUND, f"peak RSS {peak_rss >> 20} MiB"
    assert seconds < TIME_BOUND


@pytest.mark.parametrize("kind", ["gt", "coco-results", "jsonl"])
def test_json_number_with_too_many_digits_names_the_file(tmp_path, kind):
    """An integer literal past Python's 4300-digit limit is the file's fault: one line naming it (#13)."""
    from cvtool.datasets import load_dataset
    from cvtool.datasets.results import read_predictions
    from cvtool.errors import BadInputError

    big = "9" * 5000
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png", "width": 10, "height": 10}],
                              "annotations": [], "categories": [{"id": 1, "name": "a"}]}))
    if kind == "gt":
        gt.write_text(gt.read_text().replace('"id": 1, "file_name"', f'"id": {big}, "file_name"'))
        with pytest.raises(BadInputError, match=r"gt\.json: JSON number with too many digits"):
            load_dataset(gt)
        return
    if kind == "coco-results":
        pred = tmp_path / "p.json"
        pred.write_text(f'[{{"image_id": {big}, "category_id": 1, "bbox": [1, 1, 2, 2], "score": 0.5}}]')
        match = r"p\.json: JSON number with too many digits"
    else:
        pred = tmp_path / "p.jsonl"
        pred.write_text(f'{{"file": "a.png", "width": {big}, "height": 10, "boxes": [], "scores": [], '
                        f'"labels": []}}\n')
        match = r"p\.jsonl:1: JSON number with too many digits"
    with pytest.raises(BadInputError, match=match):
        read_predictions(pred, load_dataset(gt))
