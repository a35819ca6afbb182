from pathlib import Path

import numpy as np
import pytest

from rscovlm.dota.io import (
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
    from rscovlm.dota.io import read_task1_file

    p = tmp_path / "Task1_ship.txt"
    p.write_text("B 0.5 0 0 1 0 1 1 0 1\n\nA 0.25 2 2 3 2 3 3 2 3\n  \nB 1e-3 4 4 5 4 5 5 4 5\n")
    ids, scores, quads, lines = read_task1_file(p, with_lines=True)
    assert ids == ["B", "A", "B"] and lines == [1, 3, 5]
    np.testing.assert_array_equal(scores, [0.5, 0.25, 1e-3])
    got = read_task1_dir(tmp_path)
    assert list(got) == ["A", "B"]
    np.testing.assert_array_equal(got["B"].scores, [0.5, 1e-3])
    np.testing.assert_array_equal(got["B"].boxes.data[1], [4, 4, 5, 4, 5, 5, 4, 5])


# ---- the one-pass readers (compiled and numpy) against an independent line-by-line oracle ---------------------

_NUMBER_FORMS = [
    lambda r, v: repr(v), lambda r, v: f"{v:.2f}", lambda r, v: f"{v:.4e}", lambda r, v: str(int(v)),
    lambda r, v: f"{v:+.3f}", lambda r, v: f"{v:.17g}", lambda r, v: "%.25f" % v, lambda r, v: f"{v:.1f}".rstrip("0"),
    lambda r, v: "0" * int(r.integers(1, 4)) + f"{abs(v):.3f}", lambda r, v: f"{v:.3E}".replace("E+0", "E"),
    lambda r, v: "-0" if r.random() < 0.5 else "0.", lambda r, v: f".{int(r.integers(0, 10**6)):06d}",
    lambda r, v: str(int(r.integers(0, 2**62))) + "0" * int(r.integers(0, 9)), lambda r, v: f"{v * 1e-300:.6e}",
    lambda r, v: "123456789012345678901234.5678", lambda r, v: f"{v:.3f}e{int(r.integers(-30, 30))}",
]


def _number(rng) -> str:
    v = float(rng.choice([rng.uniform(-5000, 5000), rng.uniform(0, 1), rng.normal() * 1e9, 0.0]))
    return _NUMBER_FORMS[int(rng.integers(len(_NUMBER_FORMS)))](rng, v)


def _sep(rng) -> str:
    return str(rng.choice([" ", "  ", "\t", " \t "]))


def _task1_text(rng, n: int) -> str:
    lines = []
    for _ in range(n):
        if rng.random() < 0.05:
            lines.append(str(rng.choice(["", "   ", "\t"])))
            continue
        toks = [f"P{int(rng.integers(0, 40)):04d}"] + [_number(rng) for _ in range(9)]
        lines.append(str(rng.choice(["", " "])) + _sep(rng).join(toks) + str(rng.choice(["", " "])))
    end = str(rng.choice(["\n", "\r\n"]))
    return end.join(lines) + str(rng.choice(["", end]))


def _task1_oracle(text: str):
    ids, rows, line_nos = [], [], []
    for k, line in enumerate(text.splitlines(), start=1):
        tok = line.split()
        if tok:
            ids.append(tok[0])
            rows.append([float(t) for t in tok[1:]])
            line_nos.append(k)
    return ids, np.array(rows, float).reshape(-1, 9), line_nos


@pytest.fixture(params=["compiled", "numpy"])
def reader(request, monkeypatch):
    from rscovlm.dota.io import native

    if request.param == "compiled" and native() is None:
        pytest.skip("compiled kernels not built")
    if request.param == "numpy":
        monkeypatch.setenv("RSCOVLM_NO_NATIVE", "1")
    return request.param


def test_task1_bytes_reader_gives_float_values_bit_for_bit(reader):
    """Random well-formed Task1 text with every number form float() reads (exponents, 17+ digits, leading
    zeros, signs, -0, subnormals): ids, line numbers and the exact float() bits (the numpy reader falls back to
    the careful one where its tokenizer differs, e.g. on tabs, and must then give None, never other numbers)."""
    from rscovlm.dota.io import parse_task1_bytes

    rng = np.random.default_rng(7)
    compared = 0
    for trial in range(60):
        text = _task1_text(rng, int(rng.integers(0, 300)))
        got = parse_task1_bytes((b"\xef\xbb\xbf" if trial % 7 == 0 else b"") + text.encode())
        if got is None:
            assert reader == "numpy"
            continue
        ids, values, line_nos = _task1_oracle(text)
        uniq, inverse, scores, quads, lines = got
        assert uniq == sorted(set(ids)) and [uniq[i] for i in inverse] == ids
        assert np.array_equal(np.column_stack([scores, quads]).view(np.int64).reshape(-1, 9),
                              values.view(np.int64).reshape(-1, 9))  # bits, -0.0 included
        assert lines.tolist() == line_nos
        compared += len(ids)
    assert compared > (4000 if reader == "compiled" else 500)


@pytest.mark.parametrize("bad", ["nan", "inf", "-Infinity", "1e999", "0x1A", "1_000", "1.2.3", "--1", "1e", ".",
                                 "+", "12a", "\u00bd", "1\x0b2", "1\r2", "1\x1c2", "1\x00"])
def test_task1_bytes_reader_leaves_anything_unusual_to_the_careful_reader(reader, tmp_path, bad):
    from rscovlm.dota.io import DotaFormatError, parse_task1_bytes, read_task1_file

    text = f"P1 0.5 1 2 3 4 5 6 7 8\nP2 0.5 1 2 3 {bad} 5 6 7 8\n"
    assert parse_task1_bytes(text.encode("utf-8")) is None
    path = tmp_path / "Task1_plane.txt"
    path.write_bytes(text.encode("utf-8"))
    try:
        ids, _, quads = read_task1_file(path)
    except DotaFormatError as err:
        assert err.line_no == 2
    else:  # float() reads it (e.g. '1_000'): the careful reader's value
        assert ids == ["P1", "P2"] and quads[1, 3] == float(bad)


def test_task1_bytes_reader_field_counts(reader):
    from rscovlm.dota.io import parse_task1_bytes

    assert parse_task1_bytes(b"P1 0.5 1 2 3 4 5 6 7\n") is None  # 9 fields
    assert parse_task1_bytes(b"P1 0.5 1 2 3 4 5 6 7 8 9\n") is None  # 11
    assert parse_task1_bytes(b"P1 0.5 1 2 3 4 5 6 7 8\r") is None  # a lone CR ends a line for splitlines()
    got = parse_task1_bytes(b"\n\nP1 0.5 1 2 3 4 5 6 7 8")  # no final newline
    assert got[0] == ["P1"] and got[4].tolist() == [3]


def test_labeltxt_bytes_reader_matches_the_careful_reader(reader, tmp_path):
    """labelTxt files with headers (any case), CRLF, BOM, 9-field lines (difficult 0), flags 0/1/2, blank lines:
    the one-pass reader gives the careful reader's quads, labels, flags and header values; anything it does not
    take (difficult '01', a bad gsd, an 11-field line) is None, and the careful reader decides."""
    from rscovlm.dota import io as dota_io

    rng = np.random.default_rng(3)
    raws, expected = [], []
    for f in range(25):
        lines = []
        if rng.random() < 0.6:
            lines.append(str(rng.choice(["imagesource:GoogleEarth", "ImageSource: GF-2 ", "IMAGESOURCE:"])))
        if rng.random() < 0.6:
            lines.append(str(rng.choice(["gsd:0.146343590398", "gsd:null", "GSD: 1e-1", "gsd:", "gsd:NaN"])))
        for _ in range(int(rng.integers(0, 40))):
            if rng.random() < 0.05:
                lines.append("")
                continue
            toks = [_number(rng) for _ in range(8)] + [str(rng.choice(["plane", "small-vehicle", "x:y"]))]
            if rng.random() < 0.8:
                toks.append(str(rng.choice(["0", "1", "2"])))
            lines.append(_sep(rng).join(toks))
        end = str(rng.choice(["\n", "\r\n"]))
        raw = ((b"\xef\xbb\xbf" if f % 5 == 0 else b"") + (end.join(lines) + end * int(rng.integers(0, 2))).encode())
        path = tmp_path / f"{f}.txt"
        path.write_bytes(raw)
        raws.append(raw)
        monkey = dota_io.parse_labeltxt_bytes
        dota_io.parse_labeltxt_bytes = lambda _raws: None  # the careful reader alone
        try:
            expected.append(dota_io.read_labeltxt_arrays(path))
        finally:
            dota_io.parse_labeltxt_bytes = monkey
    batch = dota_io.parse_labeltxt_bytes(raws)
    if batch is None:
        assert reader == "numpy"  # its tokenizer takes tabs and 9-field lines to the careful reader
        return
    for f, want in enumerate(expected):
        sel = batch.file == f
        assert np.array_equal(batch.quads[sel].view(np.int64), want.quads.view(np.int64))
        assert [batch.classes[i] for i in batch.label[sel]] == want.labels
        assert batch.difficult[sel].tolist() == want.difficult.tolist()
        assert (batch.imagesource[f], batch.gsd[f]) == (want.imagesource, want.gsd)
    for bad in (b"1 2 3 4 5 6 7 8 plane 01\n", b"gsd:abc\n", b"1 2 3 4 5 6 7 8 plane 0 x\n", b"tag:1\n",
                b"1 2 3 4 5 6 7 8\n", "1 2 3 4 5 6 7 8 \u00e9t\u00e9 0\n".encode()):
        assert dota_io.parse_labeltxt_bytes([b"1 2 3 4 5 6 7 8 plane 0\n", bad]) is None, bad


def test_task1_bytes_reader_rounds_hard_decimals_exactly(reader):
    """15-19 significant digits over powers of ten up to 1e-22 (the compiled reader's 128-bit check of the twice
    rounded quotient), values next to powers of two and decimal midpoints between two doubles: float()'s bits."""
    from decimal import Decimal, getcontext

    from rscovlm.dota.io import parse_task1_bytes

    rng = np.random.default_rng(1)
    strs = []
    for digits in range(15, 20):
        for k in range(1, 23):
            for w in rng.integers(10 ** (digits - 1), 10 ** digits - 1, 60, dtype=np.uint64):
                t = str(int(w))
                strs.append(t[:-k] + "." + t[-k:] if k < len(t) else "0." + "0" * (k - len(t)) + t)
    getcontext().prec = 60
    for e in range(-60, 70, 3):
        for d in range(-3, 4):
            x = 2.0 ** -e
            for _ in range(abs(d)):
                x = float(np.nextafter(x, 0 if d < 0 else np.inf))
            mid = (Decimal(x) + Decimal(float(np.nextafter(x, np.inf)))) / 2
            strs += [repr(x), f"{x:.17e}", f"{x:.19f}", format(mid, ".19e"), format(mid, ".25e")]
    text = "".join(f"P {s} 0 0 0 0 0 0 0 0\n" for s in strs).encode()
    got = parse_task1_bytes(text)
    assert got is not None
    want = np.array([float(s) for s in strs])
    assert np.array_equal(got[2].view(np.int64), want.view(np.int64))
