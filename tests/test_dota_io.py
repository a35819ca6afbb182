from pathlib import Path

import numpy as np
import pytest

from rscovlm.data.dota_io import (
    DotaFormatError,
    read_labeltxt,
    read_labeltxt_dir,
    read_task1_dir,
    write_labeltxt,
    write_task1_dir,
)
from rscovlm.geometry import Boxes, ObjectSet

DOTA_EXAMPLES = Path("/work/shared/data/dota_examples")

CRLF_FILE = (
    "imagesource:GoogleEarth\r\n"
    "gsd:0.255589285596\r\n"
    "1054 1028 1063 1011 1111 1040 1112 1062 ship 1\r\n"
    "807.5 331 800 324 817 309 823 316 small-vehicle 0\r\n"
)


def test_labeltxt_crlf_headers_and_flags(tmp_path):
    p = tmp_path / "P1.txt"
    p.write_bytes(CRLF_FILE.encode())
    lab = read_labeltxt(p)
    assert lab.imagesource == "GoogleEarth"
    assert lab.gsd == pytest.approx(0.255589285596)
    assert lab.objects.labels == ["ship", "small-vehicle"]
    assert lab.objects.difficult.tolist() == [1, 0]
    assert lab.objects.boxes.kind == "quad"
    np.testing.assert_array_equal(lab.objects.boxes.data[1], [807.5, 331, 800, 324, 817, 309, 823, 316])


def test_labeltxt_round_trip_is_byte_identical(tmp_path):
    src = tmp_path / "a.txt"
    src.write_bytes(CRLF_FILE.encode())
    lab = read_labeltxt(src)
    out = tmp_path / "b.txt"
    write_labeltxt(out, lab.objects, imagesource=lab.imagesource, gsd=lab.gsd, newline="\r\n")
    assert out.read_bytes() == src.read_bytes()
    # and LF, no header, default difficult
    objs = ObjectSet(Boxes(np.array([[0.1, 0, 10, 0, 10, 5, 0, 5]]), "quad"), ["plane"])
    write_labeltxt(out, objs)
    assert out.read_text() == "0.1 0 10 0 10 5 0 5 plane 0\n"
    back = read_labeltxt(out)
    assert back.imagesource is None and back.gsd is None
    np.testing.assert_array_equal(back.objects.boxes.data, objs.boxes.data)


def test_missing_difficult_and_gsd_null(tmp_path):
    p = tmp_path / "x.txt"
    p.write_text("gsd:null\n\n1 2 3 4 5 6 7 8 plane\n")
    lab = read_labeltxt(p)
    assert lab.gsd is None and lab.objects.difficult.tolist() == [0]


@pytest.mark.parametrize("bad, reason", [
    ("1 2 3 4 5 6 plane 0", "fields"),
    ("1 2 3 4 5 6 7 plane 0", "not a number"),
    ("1 2 3 4 5 6 7 8 plane 0 extra", "fields"),
    ("1 2 3 4 nan 6 7 8 plane 0", "finite"),
    ("1 2 3 4 inf 6 7 8 plane 0", "finite"),
    ("1 2 3 x 5 6 7 8 plane 0", "not a number"),
    ("1 2 3 4 5 6 7 8 plane 7", "difficult"),
    ("1 2 3 4 5 6 7 8 spaceship 0", "unknown class"),
])
def test_malformed_labeltxt_line_names_file_and_line(tmp_path, bad, reason):
    p = tmp_path / "bad.txt"
    p.write_text("imagesource:x\n1 2 3 4 5 6 7 8 plane 0\n" + bad + "\n")
    with pytest.raises(DotaFormatError) as err:
        read_labeltxt(p, vocabulary={"plane", "ship"})
    assert f"{p}:3" in str(err.value) and reason in str(err.value)
    assert err.value.line_no == 3
    lab = read_labeltxt(p, vocabulary={"plane", "ship"}, skip_invalid=True)
    assert len(lab.objects) == 1 and len(lab.skipped) == 1 and lab.skipped[0].line_no == 3


def _dets():
    a = ObjectSet(Boxes(np.array([[0, 0, 4, 0, 4, 4, 0, 4], [1.5, 1, 9, 1, 9, 8, 1.5, 8]]), "quad"),
                  ["plane", "ship"], scores=np.array([0.9, 0.25]))
    b = ObjectSet(Boxes(np.array([[10, 10, 20, 20]]), "hbb"), ["plane"], scores=np.array([0.123456789]))
    return {"P0001": a, "P0002": b}


def test_task1_round_trip(tmp_path):
    written = write_task1_dir(tmp_path, _dets(), classes=["plane", "ship", "harbor"])
    assert sorted(p.name for p in written) == ["Task1_harbor.txt", "Task1_plane.txt", "Task1_ship.txt"]
    assert (tmp_path / "Task1_harbor.txt").read_text() == ""
    assert (tmp_path / "Task1_ship.txt").read_text() == "P0001 0.25 1.5 1 9 1 9 8 1.5 8\n"
    back = read_task1_dir(tmp_path)
    assert sorted(back) == ["P0001", "P0002"] and back.skipped == []
    assert back["P0001"].labels == ["plane", "ship"]
    np.testing.assert_array_equal(back["P0001"].scores, [0.9, 0.25])
    np.testing.assert_array_equal(back["P0002"].boxes.data, [[10, 10, 20, 10, 20, 20, 10, 20]])
    assert back["P0002"].scores[0] == 0.123456789


def test_task1_crlf_and_malformed(tmp_path):
    (tmp_path / "Task1_plane.txt").write_bytes(b"P1 0.5 0 0 1 0 1 1 0 1\r\nP1 0.5 0 0 1 0 1 1 0\r\n")
    with pytest.raises(DotaFormatError, match=r"Task1_plane.txt:2: .*10 fields"):
        read_task1_dir(tmp_path)
    got = read_task1_dir(tmp_path, skip_invalid=True)
    assert len(got["P1"]) == 1 and [s.line_no for s in got.skipped] == [2]
    (tmp_path / "Task1_plane.txt").write_text("P1 NaN 0 0 1 0 1 1 0 1\n")
    with pytest.raises(DotaFormatError, match=r"Task1_plane.txt:1: .*finite"):
        read_task1_dir(tmp_path)
    (tmp_path / "Task1_plane.txt").write_text("P1 0.5 0 0 1 0 1 1 0 1\n")
    (tmp_path / "Task1_boat.txt").write_text("P1 0.5 0 0 1 0 1 1 0 1\n")
    with pytest.raises(DotaFormatError, match=r"Task1_boat.txt: unknown class 'boat'"):
        read_task1_dir(tmp_path, vocabulary={"plane"})
    assert read_task1_dir(tmp_path, skip_invalid=True, vocabulary={"plane"}).skipped[0].line_no == 0


@pytest.mark.skipif(not (DOTA_EXAMPLES / "labelTxt").is_dir(), reason="public DOTA sample labels not present")
def test_real_dota_sample_labels_round_trip(tmp_path):
    labels = read_labeltxt_dir(DOTA_EXAMPLES / "labelTxt")
    assert len(labels) == 7
    assert sum(len(v.objects) for v in labels.values()) == 984
    for stem, lab in labels.items():
        out = tmp_path / f"{stem}.txt"
        write_labeltxt(out, lab.objects, imagesource=lab.imagesource, gsd=lab.gsd, newline="\r\n")
        back = read_labeltxt(out)
        np.testing.assert_array_equal(back.objects.boxes.data, lab.objects.boxes.data)
        assert back.objects.labels == lab.objects.labels and back.gsd == lab.gsd


def test_task1_fast_path_keeps_line_numbers_and_order(tmp_path):
    from rscovlm.data.dota_io import read_task1_file

    p = tmp_path / "Task1_ship.txt"
    p.write_text("B 0.5 0 0 1 0 1 1 0 1\n\nA 0.25 2 2 3 2 3 3 2 3\n  \nB 1e-3 4 4 5 4 5 5 4 5\n")
    ids, scores, quads, lines = read_task1_file(p, with_lines=True)
    assert ids == ["B", "A", "B"] and lines == [1, 3, 5]
    np.testing.assert_array_equal(scores, [0.5, 0.25, 1e-3])
    got = read_task1_dir(tmp_path)
    assert list(got) == ["A", "B"]
    np.testing.assert_array_equal(got["B"].scores, [0.5, 1e-3])
    np.testing.assert_array_equal(got["B"].boxes.data[1], [4, 4, 5, 4, 5, 5, 4, 5])
